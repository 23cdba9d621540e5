//! `canaryctl version`

use canary_userspace::api::{API_VERSION, Version};

pub fn print(data: serde_json::Value) -> Result<(), serde_json::Error> {
    let v: Version = serde_json::from_value(data)?;
    println!(
        "canaryctl {} (api {API_VERSION})",
        env!("CARGO_PKG_VERSION")
    );
    println!("canaryd   {} (api {})", v.version, v.api_version);
    Ok(())
}
