//! `canaryctl version`

use canary_userspace::api::{API_VERSION, Version};

pub fn print(v: Version) {
    println!(
        "canaryctl {} (api {API_VERSION})",
        env!("CARGO_PKG_VERSION")
    );
    println!("canaryd   {} (api {})", v.version, v.api_version);
}
