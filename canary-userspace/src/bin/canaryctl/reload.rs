//! `canaryctl reload`: the text is `canary_userspace::cli::reload`'s.

use canary_userspace::{api::Reloaded, cli::reload};

pub fn print(r: Reloaded) {
    print!("{}", reload::render(&r));
    print_warnings(&r);
}

/// Printed after the changes, on stderr: the reload worked, but these are
/// probably not meant.
pub fn print_warnings(r: &Reloaded) {
    for w in &r.warnings {
        eprintln!("canaryctl: warning: {w}");
    }
}
