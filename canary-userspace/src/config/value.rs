//! Typed reads from the raw TOML tree, each reporting under its field path.
//!
//! Reading the tree by hand, rather than through serde derive, is what lets
//! every error carry a precise path and lets validation go on after one.

use toml::{Table, Value};

use super::error::Collector;
use crate::model::kinds::Named;

/// A field read from a table.
pub(crate) enum Field<T> {
    /// Not in the table.
    Absent,
    /// Present with the wrong type; already reported.
    Bad,
    Found(T),
}

impl<T> Field<T> {
    /// The value of a required field; reports it missing when absent.
    pub(crate) fn required(self, errs: &mut Collector, path: &str, example: &str) -> Option<T> {
        match self {
            Field::Found(v) => Some(v),
            Field::Bad => None,
            Field::Absent => {
                errs.push(path, format!("required field is missing, e.g. {example}"));
                None
            }
        }
    }

    /// The value of an optional field, or `default` when absent.
    pub(crate) fn or(self, default: T) -> Option<T> {
        match self {
            Field::Found(v) => Some(v),
            Field::Bad => None,
            Field::Absent => Some(default),
        }
    }
}

/// `base.key`, quoting keys that TOML would need quoted.
pub(crate) fn join(base: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    };
    if base.is_empty() {
        key
    } else {
        format!("{base}.{key}")
    }
}

/// What a value is, for "expected X, found Y" messages.
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => format!("the string {s:?}"),
        Value::Integer(i) => format!("the integer {i}"),
        Value::Float(f) => format!("the float {f}"),
        Value::Boolean(b) => format!("the boolean {b}"),
        Value::Datetime(d) => format!("the datetime {d}"),
        Value::Array(_) => "an array".to_owned(),
        Value::Table(_) => "a table".to_owned(),
    }
}

pub(crate) fn wrong_type(errs: &mut Collector, path: &str, expected: &str, found: &Value) {
    errs.push(
        path,
        format!("expected {expected}, found {}", describe(found)),
    );
}

/// Reports every key that is not in `known`.
pub(crate) fn reject_unknown<'k>(
    errs: &mut Collector,
    keys: impl IntoIterator<Item = &'k String>,
    path: &str,
    known: &[&str],
) {
    for key in keys {
        if !known.contains(&key.as_str()) {
            errs.push(
                join(path, key),
                format!("unknown field; expected one of: {}", known.join(", ")),
            );
        }
    }
}

pub(crate) fn string<'t>(
    errs: &mut Collector,
    table: &'t Table,
    path: &str,
    key: &str,
) -> Field<&'t str> {
    match table.get(key) {
        None => Field::Absent,
        Some(Value::String(s)) => Field::Found(s),
        Some(other) => {
            wrong_type(errs, &join(path, key), "a string", other);
            Field::Bad
        }
    }
}

pub(crate) fn integer(errs: &mut Collector, table: &Table, path: &str, key: &str) -> Field<i64> {
    match table.get(key) {
        None => Field::Absent,
        Some(Value::Integer(i)) => Field::Found(*i),
        Some(other) => {
            wrong_type(errs, &join(path, key), "an integer", other);
            Field::Bad
        }
    }
}

pub(crate) fn boolean(errs: &mut Collector, table: &Table, path: &str, key: &str) -> Field<bool> {
    match table.get(key) {
        None => Field::Absent,
        Some(Value::Boolean(b)) => Field::Found(*b),
        Some(other) => {
            wrong_type(errs, &join(path, key), "true or false", other);
            Field::Bad
        }
    }
}

/// A number written either as an integer (`5`) or a float (`5.0`); TOML's
/// `nan` and `inf` are refused here, for every field: NaN compares false
/// with every bound (a gate with `min = nan` could never fail) and no
/// setting of canary means infinity.
pub(crate) fn number(errs: &mut Collector, table: &Table, path: &str, key: &str) -> Field<f64> {
    match table.get(key) {
        None => Field::Absent,
        Some(Value::Float(f)) if !f.is_finite() => {
            errs.push(
                join(path, key),
                format!("{f} is not a finite number; write a number such as 0.9"),
            );
            Field::Bad
        }
        Some(Value::Float(f)) => Field::Found(*f),
        // Only integers far outside any valid range lose precision here.
        Some(Value::Integer(i)) => Field::Found(*i as f64),
        Some(other) => {
            wrong_type(errs, &join(path, key), "a number", other);
            Field::Bad
        }
    }
}

pub(crate) fn array<'t>(
    errs: &mut Collector,
    table: &'t Table,
    path: &str,
    key: &str,
) -> Field<&'t [Value]> {
    match table.get(key) {
        None => Field::Absent,
        Some(Value::Array(items)) => Field::Found(items),
        Some(other) => {
            wrong_type(errs, &join(path, key), "an array", other);
            Field::Bad
        }
    }
}

/// The strings of an array, each with its path; elements of another type are
/// reported and left out.
pub(crate) fn strings<'t>(
    errs: &mut Collector,
    items: &'t [Value],
    path: &str,
) -> Vec<(String, &'t str)> {
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        match item {
            Value::String(s) => out.push((item_path, s.as_str())),
            other => wrong_type(errs, &item_path, "a string", other),
        }
    }
    out
}

/// A string field naming one of `T`'s words; absent, the first word.
pub(crate) fn word<T: Named>(
    errs: &mut Collector,
    table: &Table,
    path: &str,
    key: &str,
) -> Option<T> {
    word_or(errs, table, path, key, T::ALL[0].0)
}

/// `word`, `default` when absent.
pub(crate) fn word_or<T: Named>(
    errs: &mut Collector,
    table: &Table,
    path: &str,
    key: &str,
    default: T,
) -> Option<T> {
    let text = string(errs, table, path, key).or(default.name())?;
    match T::parse_name(text) {
        Ok(choice) => Some(choice),
        Err(e) => {
            errs.push(
                join(path, key),
                format!("{text:?} is not a valid {key}; expected {}", e.expected),
            );
            None
        }
    }
}
