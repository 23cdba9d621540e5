//! `canaryctl set-weight SERVICE PERCENT`

use canary_userspace::{
    api::{Request, WeightSet},
    config::{low_weight_hint, parse_percent, weight_percent_to_bp},
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Service name as in the config's [[service]] name.
    service: String,
    /// Canary share in percent, 0 to 100, at most two decimals; `5` and
    /// `5%` are the same.
    // Read as text and parsed here, so a bad value gets the same
    // `canaryctl: ...` message as every other error, not clap's.
    #[arg(allow_hyphen_values = true)]
    percent: String,
}

impl Args {
    /// Checks the percent here too, so a typo never reaches the daemon.
    /// Below 1 % it prints a hint (the weight is still set: a smaller
    /// share than meant is the cautious side of the mistake).
    pub fn request(&self) -> Result<Request, String> {
        let percent = parse_percent(&self.percent).map_err(|e| format!("percent: {e}"))?;
        let bp = weight_percent_to_bp(percent).map_err(|e| format!("percent {percent}: {e}"))?;
        if let Some(hint) = low_weight_hint(bp) {
            eprintln!("canaryctl: note: {}: {hint}", self.service);
        }
        Ok(Request::SetWeight {
            service: self.service.clone(),
            percent,
        })
    }
}

pub fn print(w: WeightSet) {
    println!(
        "{}: canary weight {:.2}% -> {:.2}% (new flows only; established connections stay where they are)",
        w.service, w.previous_percent, w.percent
    );
    for warning in &w.warnings {
        eprintln!("canaryctl: warning: {warning}");
    }
}
