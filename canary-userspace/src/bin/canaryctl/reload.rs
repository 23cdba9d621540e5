//! `canaryctl reload`: the text is `canary_userspace::cli::reload`'s.

use canary_userspace::{api::Reloaded, cli::reload};

pub fn print(r: Reloaded) {
    print!("{}", reload::render(&r));
}
