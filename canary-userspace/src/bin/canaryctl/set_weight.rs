//! `canaryctl set-weight SERVICE PERCENT`

use canary_userspace::api::WeightSet;

pub fn print(w: WeightSet) {
    println!(
        "{}: canary weight {:.2} -> {:.2} (new flows only; established connections stay where they are)",
        w.service, w.previous, w.weight
    );
    for warning in &w.warnings {
        eprintln!("canaryctl: warning: {warning}");
    }
}
