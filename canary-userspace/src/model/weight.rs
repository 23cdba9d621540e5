//! Canary weight: a percent with at most two decimals, stored in basis points.

use canary_common::WEIGHT_SCALE;
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

/// Text that is not a weight: not a percent, or a percent that is not a
/// weight. Each says what was wrong in its own words.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseWeightError {
    #[error(transparent)]
    NotAPercent(#[from] InvalidPercent),
    #[error(transparent)]
    NotAWeight(#[from] InvalidWeight),
}

/// Reads a percent as people write it: `5`, `12.5`, `5%` or `5 %`. The
/// sign is optional because a weight is always a percent; accepting it
/// keeps `5%` from meaning anything else.
fn parse_percent(text: &str) -> Result<f64, InvalidPercent> {
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

/// Converts a percent (0 to 100, at most two decimals) to basis points:
/// 12.34 becomes 1234 exactly.
///
/// Decimals are counted on the shortest text that reads back as the same
/// float, which is what the user wrote, so 12.34 (stored as 12.339999...)
/// passes and 12.345 does not.
fn weight_percent_to_bp(percent: f64) -> Result<u16, InvalidWeight> {
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

/// The canary's share of new flows: a whole number of basis points,
/// `0..=10_000` (0 % to 100 % in steps of 0.01 %). The one type a weight
/// has from the config file to the wire to the map; people read and write
/// it as a percent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Weight(u16);

impl Weight {
    pub const ZERO: Weight = Weight(0);
    pub const FULL: Weight = Weight(WEIGHT_SCALE as u16);

    /// Basis points; None above 10,000.
    pub const fn from_bp(bp: u16) -> Option<Weight> {
        if bp as u32 <= WEIGHT_SCALE {
            Some(Weight(bp))
        } else {
            None
        }
    }

    /// A percent with at most two decimals (`weight_percent_to_bp`).
    pub fn from_percent(percent: f64) -> Result<Weight, InvalidWeight> {
        weight_percent_to_bp(percent).map(Weight)
    }

    /// Basis points: what the data path compares the flow hash with.
    pub const fn bp(self) -> u16 {
        self.0
    }

    /// The percent, exact to its two decimals (for JSON and TOML).
    pub fn percent(self) -> f64 {
        f64::from(self.0) / 100.0
    }

    /// The canary's share as a fraction, 0 to 1 (for Prometheus ratios).
    pub fn ratio(self) -> f64 {
        f64::from(self.0) / f64::from(WEIGHT_SCALE)
    }
}

/// `12.5`, `5%` or `5 %` (`parse_percent`), at most two decimals.
impl std::str::FromStr for Weight {
    type Err = ParseWeightError;

    fn from_str(text: &str) -> Result<Weight, ParseWeightError> {
        Ok(Weight::from_percent(parse_percent(text)?)?)
    }
}

/// As a percent with a sign and no trailing zeros: `12.5%`, `0.05%`,
/// `100%`. A precision fixes the decimals (`{:.2}`: `12.50%`, as status
/// and logs show weights); a width pads the whole, right-aligned unless
/// told otherwise (`{:>8.2}`: `  12.50%`).
impl std::fmt::Display for Weight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = match f.precision() {
            Some(decimals) => format!("{:.decimals$}%", self.percent()),
            None => format!("{}%", self.percent()),
        };
        // `Formatter::pad` would cut the text to the precision.
        let fill = f.width().unwrap_or(0).saturating_sub(text.chars().count());
        let (before, after) = match f.align() {
            Some(std::fmt::Alignment::Left) => (0, fill),
            Some(std::fmt::Alignment::Center) => (fill / 2, fill - fill / 2),
            Some(std::fmt::Alignment::Right) | None => (fill, 0),
        };
        let c = f.fill();
        let pad = |f: &mut std::fmt::Formatter<'_>, n: usize| {
            (0..n).try_for_each(|_| std::fmt::Write::write_char(f, c))
        };
        pad(f, before)?;
        f.write_str(&text)?;
        pad(f, after)
    }
}

/// A hint for a weight below 1 % (and above 0): `0.05` is easily typed for
/// 5 %, and the data path would silently send 1 in 2000 new flows. The
/// weight is still valid; the caller warns.
pub fn low_weight_hint(weight: Weight) -> Option<String> {
    let bp = weight.bp();
    if bp == 0 || bp >= 100 {
        return None;
    }
    let one_in = f64::from(WEIGHT_SCALE) / f64::from(bp);
    Some(format!(
        "{weight} (1 in {one_in:.0} new flows); did you mean {bp}? The weight is a percent"
    ))
}

/// On the wire and in files: basis points, a whole number.
impl Serialize for Weight {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u16(self.0)
    }
}

impl<'de> Deserialize<'de> for Weight {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Weight, D::Error> {
        let bp = u16::deserialize(d)?;
        Weight::from_bp(bp).ok_or_else(|| {
            serde::de::Error::custom(format!("a weight is 0 to 10000 basis points; found {bp}"))
        })
    }
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
        let bp = |bp| Weight::from_bp(bp).unwrap();
        assert_eq!(
            low_weight_hint(bp(5)).unwrap(),
            "0.05% (1 in 2000 new flows); did you mean 5? The weight is a percent"
        );
        assert_eq!(
            low_weight_hint(bp(50)).unwrap(),
            "0.5% (1 in 200 new flows); did you mean 50? The weight is a percent"
        );
        assert_eq!(low_weight_hint(Weight::ZERO), None);
        assert_eq!(low_weight_hint(bp(100)), None);
    }

    #[test]
    fn a_weight_is_basis_points_read_and_written_as_a_percent() {
        let w: Weight = "12.5%".parse().unwrap();
        assert_eq!(w.bp(), 1250);
        assert_eq!(w.to_string(), "12.5%");
        assert_eq!(Weight::from_bp(5).unwrap().to_string(), "0.05%");
        assert_eq!(Weight::FULL.to_string(), "100%");
        assert_eq!(Weight::from_bp(10_001), None);
        assert!("12.345".parse::<Weight>().is_err());
        assert!("101".parse::<Weight>().is_err());
        assert_eq!(serde_json::to_string(&w).unwrap(), "1250");
        assert_eq!(serde_json::from_str::<Weight>("1250").unwrap(), w);
        assert!(serde_json::from_str::<Weight>("10001").is_err());
        assert!(serde_json::from_str::<Weight>("12.5").is_err());
    }

    #[test]
    fn a_percent_converts_to_basis_points_exactly() {
        for (percent, bp) in [
            (0.0, 0),
            (100.0, 10_000),
            (12.34, 1234),
            (0.01, 1),
            (5.0, 500),
            (99.99, 9999),
            (0.29, 29),
            (1.15, 115),
            (-0.0, 0),
        ] {
            assert_eq!(
                Weight::from_percent(percent).map(Weight::bp),
                Ok(bp),
                "{percent}"
            );
        }
        // Every two-decimal percent, computed the way a parser would see it,
        // and back.
        for bp in 0..=10_000_u16 {
            let percent: f64 = format!("{}.{:02}", bp / 100, bp % 100).parse().unwrap();
            let w = Weight::from_percent(percent).unwrap();
            assert_eq!(w.bp(), bp, "{percent}");
            assert_eq!(w.percent(), percent, "{bp}");
        }
    }

    #[test]
    fn a_percent_out_of_range_or_too_precise_is_not_a_weight() {
        for percent in [100.01, 12.345, f64::NAN, -0.5, f64::INFINITY, 0.001, 1e-7] {
            let error = Weight::from_percent(percent).unwrap_err().to_string();
            assert!(
                error.contains("from 0 to 100") && error.contains("at most two decimals"),
                "{percent}: {error}"
            );
        }
        assert_eq!(
            "150".parse::<Weight>(),
            Err(ParseWeightError::NotAWeight(InvalidWeight(150.0)))
        );
        assert_eq!(
            "5x".parse::<Weight>(),
            Err(ParseWeightError::NotAPercent(InvalidPercent("5x".into())))
        );
        assert_eq!(
            "150".parse::<Weight>().unwrap_err().to_string(),
            "weight must be a percent from 0 to 100 with at most two decimals, e.g. 12.5; found 150"
        );
    }

    #[test]
    fn a_weight_shows_with_the_decimals_and_width_asked_for() {
        let w = Weight::from_bp(1250).unwrap();
        assert_eq!(format!("{w:.2}"), "12.50%");
        assert_eq!(format!("{:.2}", Weight::ZERO), "0.00%");
        assert_eq!(format!("{w:>8.2}"), "  12.50%");
        assert_eq!(format!("{w:<8}|"), "12.5%   |");
        assert_eq!(format!("{w:8}"), "   12.5%");
        assert_eq!(format!("{:.2}", Weight::FULL), "100.00%");
        assert_eq!(w.ratio(), 0.125);
        assert_eq!(Weight::FULL.ratio(), 1.0);
    }
}
