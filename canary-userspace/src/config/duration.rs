//! Durations as written in the config: an integer and a unit, e.g. "30s".

use std::time::Duration;

const FORM: &str = r#"write an integer and a unit ms, s, m or h, e.g. "500ms", "30s", "2m""#;

/// Text that is not a duration, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a duration: {why}; {FORM}")]
pub struct InvalidDuration {
    pub text: String,
    pub why: String,
}

/// Parses "500ms", "30s", "2m" or "1h". Fractions, signs, spaces and
/// compound forms ("1m30s") are rejected so a value means one obvious thing.
pub fn parse_duration(text: &str) -> Result<Duration, InvalidDuration> {
    let bad = |why: &str| {
        Err(InvalidDuration {
            text: text.to_owned(),
            why: why.to_owned(),
        })
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return bad("it does not start with an integer");
    }
    let Ok(count) = digits.parse::<u64>() else {
        return bad("the number is too large");
    };
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "" => return bad("the unit is missing"),
        other => return bad(&format!("{other:?} is not a unit")),
    };
    match count.checked_mul(millis_per_unit) {
        Some(millis) => Ok(Duration::from_millis(millis)),
        None => bad("the number is too large"),
    }
}
