//! gRPC status codes by name, and the set of them a rollout counts as
//! errors (`[service.rollout] grpc_error_codes`).
//!
//! A gRPC call that fails still answers `:status 200`; its outcome is the
//! `grpc-status` trailer, a number 0..=16 (the gRPC spec's
//! doc/statuscodes.md). The set is a bitmask, so the daemon asks it once per
//! decoded trailer without allocating.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The highest status code the gRPC spec defines (UNAUTHENTICATED).
pub const MAX_CODE: u32 = 16;

/// Each code's name, indexed by the code, spelled as in the gRPC spec.
pub const NAMES: [&str; MAX_CODE as usize + 1] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The name of `code`, or `None` above `MAX_CODE`.
pub fn name(code: u32) -> Option<&'static str> {
    NAMES.get(code as usize).copied()
}

/// Why a code cannot be in a `GrpcCodes`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GrpcCodeError {
    #[error(
        "{found:?} is not a gRPC status code name; expected one of {}",
        names_but_ok()
    )]
    UnknownName { found: String },
    #[error("{found} is not a gRPC status code; codes are 0 to {MAX_CODE}")]
    OutOfRange { found: i64 },
    /// OK is success by definition: listing it would count every healthy
    /// call as a failure.
    #[error("OK (0) is never a failure; list error codes only (1 to {MAX_CODE})")]
    Ok,
}

fn names_but_ok() -> String {
    NAMES[1..].join(", ")
}

/// A code from its name, any case (`"unavailable"` is 14), OK included:
/// whether OK belongs in a set is the set's decision.
pub fn parse_name(text: &str) -> Result<u32, GrpcCodeError> {
    NAMES
        .iter()
        .position(|n| n.eq_ignore_ascii_case(text))
        .map(|code| code as u32)
        .ok_or_else(|| GrpcCodeError::UnknownName {
            found: text.to_owned(),
        })
}

/// A code from its number, checked to be one the spec defines.
pub fn from_number(n: i64) -> Result<u32, GrpcCodeError> {
    match u32::try_from(n) {
        Ok(code) if code <= MAX_CODE => Ok(code),
        _ => Err(GrpcCodeError::OutOfRange { found: n }),
    }
}

/// A set of gRPC error codes: bit `c` set means a call ending with
/// `grpc-status: c` counts as an error. Never holds OK (0).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct GrpcCodes(u32);

impl GrpcCodes {
    pub const EMPTY: GrpcCodes = GrpcCodes(0);

    /// The default: failures of the server or its dependencies. Left out
    /// are codes the client causes (CANCELLED, INVALID_ARGUMENT, NOT_FOUND,
    /// ALREADY_EXISTS, PERMISSION_DENIED, FAILED_PRECONDITION, ABORTED,
    /// OUT_OF_RANGE, UNAUTHENTICATED), which a canary does not make more
    /// of, and RESOURCE_EXHAUSTED, most often a rate limit doing its job.
    pub const DEFAULT: GrpcCodes = GrpcCodes(
        1 << 2 // UNKNOWN
            | 1 << 4 // DEADLINE_EXCEEDED
            | 1 << 12 // UNIMPLEMENTED
            | 1 << 13 // INTERNAL
            | 1 << 14 // UNAVAILABLE
            | 1 << 15, // DATA_LOSS
    );

    /// The set of `codes`; OK or a code above `MAX_CODE` is refused.
    /// A code listed twice is in the set once.
    pub fn from_codes(codes: impl IntoIterator<Item = u32>) -> Result<GrpcCodes, GrpcCodeError> {
        let mut set = GrpcCodes::EMPTY;
        for code in codes {
            set = set.with(code)?;
        }
        Ok(set)
    }

    /// This set and `code`.
    pub fn with(self, code: u32) -> Result<GrpcCodes, GrpcCodeError> {
        match code {
            0 => Err(GrpcCodeError::Ok),
            c if c > MAX_CODE => Err(GrpcCodeError::OutOfRange { found: c.into() }),
            c => Ok(GrpcCodes(self.0 | 1 << c)),
        }
    }

    /// Whether a call ending with `grpc-status: code` is an error; false
    /// for OK and for any code the spec does not define.
    pub fn contains(self, code: u32) -> bool {
        code <= MAX_CODE && self.0 & (1 << code) != 0
    }

    /// The codes in the set, lowest first.
    pub fn codes(self) -> impl Iterator<Item = u32> {
        (1..=MAX_CODE).filter(move |c| self.contains(*c))
    }

    /// Their names, lowest code first.
    pub fn names(self) -> Vec<&'static str> {
        self.codes().map(|c| NAMES[c as usize]).collect()
    }

    /// Bit `c` for code `c`.
    pub fn bits(self) -> u32 {
        self.0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// For `skip_serializing_if`: a state file with the default set is
    /// written as releases before the key wrote it.
    pub fn is_default(&self) -> bool {
        *self == GrpcCodes::DEFAULT
    }
}

impl Default for GrpcCodes {
    fn default() -> GrpcCodes {
        GrpcCodes::DEFAULT
    }
}

/// `UNKNOWN, DEADLINE_EXCEEDED, ...`, or `none`.
impl fmt::Display for GrpcCodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        f.write_str(&self.names().join(", "))
    }
}

impl fmt::Debug for GrpcCodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

/// A list of names, as the config file is written.
impl Serialize for GrpcCodes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.names())
    }
}

/// A list of names (any case) or numbers; OK and unknown codes refused.
impl<'de> Deserialize<'de> for GrpcCodes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Code {
            Name(String),
            Number(i64),
        }
        let mut set = GrpcCodes::EMPTY;
        for code in Vec::<Code>::deserialize(d)? {
            let code = match code {
                Code::Name(n) => parse_name(&n),
                Code::Number(n) => from_number(n),
            };
            set = code
                .and_then(|c| set.with(c))
                .map_err(serde::de::Error::custom)?;
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_the_six_server_side_failures() {
        assert_eq!(
            GrpcCodes::default().names(),
            [
                "UNKNOWN",
                "DEADLINE_EXCEEDED",
                "UNIMPLEMENTED",
                "INTERNAL",
                "UNAVAILABLE",
                "DATA_LOSS"
            ]
        );
        let d = GrpcCodes::default();
        assert!(d.contains(14) && !d.contains(0) && !d.contains(8));
        assert!(!d.contains(17) && !d.contains(u32::MAX), "undefined codes");
    }

    #[test]
    fn names_are_the_specs_and_read_in_any_case() {
        assert_eq!(name(14), Some("UNAVAILABLE"));
        assert_eq!(name(17), None);
        for (code, n) in NAMES.iter().enumerate() {
            assert_eq!(parse_name(n), Ok(code as u32));
            assert_eq!(parse_name(&n.to_lowercase()), Ok(code as u32));
        }
        assert_eq!(parse_name("Deadline_Exceeded"), Ok(4));
        assert!(matches!(
            parse_name("TIMEOUT"),
            Err(GrpcCodeError::UnknownName { .. })
        ));
        assert_eq!(from_number(16), Ok(16));
        assert_eq!(
            from_number(17),
            Err(GrpcCodeError::OutOfRange { found: 17 })
        );
        assert_eq!(
            from_number(-1),
            Err(GrpcCodeError::OutOfRange { found: -1 })
        );
    }

    #[test]
    fn ok_and_undefined_codes_are_never_in_a_set() {
        assert_eq!(GrpcCodes::from_codes([14, 0]), Err(GrpcCodeError::Ok));
        assert_eq!(
            GrpcCodes::from_codes([17]),
            Err(GrpcCodeError::OutOfRange { found: 17 })
        );
        let twice = GrpcCodes::from_codes([14, 14, 2]).unwrap();
        assert_eq!(twice.names(), ["UNKNOWN", "UNAVAILABLE"]);
        assert_eq!(twice.bits(), 1 << 2 | 1 << 14);
    }

    #[test]
    fn serde_writes_names_and_reads_names_or_numbers() {
        let set = GrpcCodes::from_codes([8, 14]).unwrap();
        let json = serde_json::to_string(&set).unwrap();
        assert_eq!(json, r#"["RESOURCE_EXHAUSTED","UNAVAILABLE"]"#);
        assert_eq!(serde_json::from_str::<GrpcCodes>(&json).unwrap(), set);
        let mixed: GrpcCodes = serde_json::from_str(r#"["unavailable", 8]"#).unwrap();
        assert_eq!(mixed, set);
        assert_eq!(
            serde_json::from_str::<GrpcCodes>("[]").unwrap(),
            GrpcCodes::EMPTY
        );
        for bad in [r#"["OK"]"#, "[0]", "[17]", r#"["TIMEOUT"]"#, "[true]", "14"] {
            assert!(serde_json::from_str::<GrpcCodes>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn display_lists_the_names_or_says_none() {
        assert_eq!(
            GrpcCodes::from_codes([13, 4]).unwrap().to_string(),
            "DEADLINE_EXCEEDED, INTERNAL"
        );
        assert_eq!(GrpcCodes::EMPTY.to_string(), "none");
    }
}
