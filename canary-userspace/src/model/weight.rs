//! Canary weight: a percent with at most two decimals, stored in basis points.

use serde::{Deserialize, Serialize};

/// A percent that is not a weight.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("weight must be a percent from 0 to 100 with at most two decimals, e.g. 12.5; found {0}")]
pub struct InvalidWeight(pub f64);

/// Text that is not a percent at all.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "{0:?} is not a percent; write a number from 0 to 100 with at most two decimals, e.g. 12.5 or 12.5%"
)]
pub struct InvalidPercent(pub String);

/// Reads a percent as people write it: `5`, `12.5`, `5%` or `5 %`. The
/// sign is optional because a weight is always a percent; accepting it
/// keeps `5%` from meaning anything else.
pub fn parse_percent(text: &str) -> Result<f64, InvalidPercent> {
    let number = text.trim();
    let number = number.strip_suffix('%').unwrap_or(number).trim_end();
    // `f64::from_str` takes "inf" and "NaN": no weight is spelled that way.
    if number.is_empty()
        || !number
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+'))
    {
        return Err(InvalidPercent(text.to_owned()));
    }
    number.parse().map_err(|_| InvalidPercent(text.to_owned()))
}

/// A hint for a weight below 1 % (and above 0): `0.05` is easily typed for
/// 5 %, and the data path would silently send 1 in 2000 new flows. The
/// weight is still valid; the caller warns.
pub fn low_weight_hint(weight_bp: u16) -> Option<String> {
    if weight_bp == 0 || weight_bp >= 100 {
        return None;
    }
    let percent = f64::from(weight_bp) / 100.0;
    let one_in = 10_000.0 / f64::from(weight_bp);
    Some(format!(
        "{percent} % (1 in {one_in:.0} new flows); did you mean {weight_bp}? The weight is a percent"
    ))
}

/// Converts a percent (0 to 100, at most two decimals) to basis points:
/// 12.34 becomes 1234 exactly.
///
/// Decimals are counted on the shortest text that reads back as the same
/// float, which is what the user wrote, so 12.34 (stored as 12.339999...)
/// passes and 12.345 does not.
pub fn weight_percent_to_bp(percent: f64) -> Result<u16, InvalidWeight> {
    let bad = || Err(InvalidWeight(percent));
    if !(0.0..=100.0).contains(&percent) {
        return bad();
    }
    let text = percent.to_string();
    let decimals = text.split_once('.').map_or(0, |(_, frac)| frac.len());
    if decimals > 2 {
        return bad();
    }
    // In range with two decimals, percent * 100 is within a few ulps of an
    // integer from 0 to 10000, so rounding gives it exactly.
    // The cast is exact: the value is an integer in 0..=10000.
    Ok((percent * 100.0).round() as u16)
}

/// Basis points as the API shows them: percent with two decimals.
pub fn bp_to_percent(bp: u16) -> f64 {
    f64::from(bp) / 100.0
}

/// Where a service's weight comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightSource {
    /// The config file's `weight`.
    #[default]
    Config,
    /// Set at run time (`canaryctl set-weight`, a rollout or a rollback)
    /// and kept in the state file until the config's weight is edited.
    Runtime,
    /// A source this client does not know (a newer daemon's).
    #[serde(other)]
    Unknown,
}

impl std::fmt::Display for WeightSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WeightSource::Config => "config",
            WeightSource::Runtime => "runtime",
            WeightSource::Unknown => "?",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_percent_sign_is_accepted() {
        for (text, want) in [("5", 5.0), ("5%", 5.0), ("5 %", 5.0), (" 12.5% ", 12.5)] {
            assert_eq!(parse_percent(text), Ok(want), "{text}");
        }
        for text in ["", "%", "five", "5%%", "inf", "NaN", "0x5", "5 percent"] {
            assert!(parse_percent(text).is_err(), "{text}");
        }
        assert_eq!(
            parse_percent("5x").unwrap_err().to_string(),
            "\"5x\" is not a percent; write a number from 0 to 100 with at most two decimals, e.g. 12.5 or 12.5%"
        );
    }

    #[test]
    fn weights_below_one_percent_get_a_hint() {
        assert_eq!(
            low_weight_hint(5).unwrap(),
            "0.05 % (1 in 2000 new flows); did you mean 5? The weight is a percent"
        );
        assert_eq!(
            low_weight_hint(50).unwrap(),
            "0.5 % (1 in 200 new flows); did you mean 50? The weight is a percent"
        );
        assert_eq!(low_weight_hint(0), None);
        assert_eq!(low_weight_hint(100), None);
    }
}
