//! `canaryctl set-weight SERVICE PERCENT`

use canary_userspace::{
    api::{Request, WeightSet},
    config::weight_percent_to_bp,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Service name as in the config's [[service]] name.
    service: String,
    /// Canary share in percent, 0 to 100, at most two decimals.
    #[arg(allow_negative_numbers = true)]
    percent: f64,
}

impl Args {
    /// Checks the percent here too, so a typo never reaches the daemon.
    pub fn request(&self) -> Result<Request, String> {
        weight_percent_to_bp(self.percent).map_err(|e| format!("percent {}: {e}", self.percent))?;
        Ok(Request::SetWeight {
            service: self.service.clone(),
            percent: self.percent,
        })
    }
}

pub fn print(w: WeightSet) {
    println!(
        "{}: canary weight {:.2}% -> {:.2}% (new flows only; established connections stay where they are)",
        w.service, w.previous_percent, w.percent
    );
}
