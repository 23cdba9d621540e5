//! Canary weight: a percent with at most two decimals, stored in basis points.

/// A percent that is not a weight.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("weight must be a percent from 0 to 100 with at most two decimals, e.g. 12.5; found {0}")]
pub struct InvalidWeight(pub f64);

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
