//! `canaryctl reload`

use canary_userspace::api::Reloaded;

pub fn print(r: Reloaded) {
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_owned()
        } else {
            v.join(", ")
        }
    };
    println!("reloaded");
    println!("  added:     {}", list(&r.added));
    println!("  updated:   {}", list(&r.updated));
    println!("  removed:   {}", list(&r.removed));
    println!("  unchanged: {}", list(&r.unchanged));
    print_warnings(&r);
}

/// Printed after the changes, on stderr: the reload worked, but these are
/// probably not meant.
pub fn print_warnings(r: &Reloaded) {
    for w in &r.warnings {
        eprintln!("canaryctl: warning: {w}");
    }
}
