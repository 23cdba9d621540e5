//! How a weight travels on the control API: a whole number of basis
//! points (`weight_bp: 1250` is 12.5 %).
//!
//! For one release the API also speaks the percent of the releases before:
//! a `set-weight` may carry `percent` instead of `weight_bp` (exactly one
//! of them), and every answer carries each weight twice, `*_bp` and the
//! old `*_percent` field, so an older canaryctl or script keeps working.
//! The percent fields are deprecated: the next release drops them, and
//! this file's percent half with them. Reading an answer, a `*_bp` field
//! wins; an older daemon's `*_percent` alone is read too.

use std::{fmt, marker::PhantomData};

use serde::{
    Deserialize, Deserializer, Serialize, Serializer,
    de::{self, DeserializeOwned, IgnoredAny, MapAccess, Visitor},
    ser::SerializeMap,
};

use crate::model::weight::{InvalidWeight, Weight};

/// What an answer carries as basis points and, for one release, as a
/// percent too: a weight, or a rollout's steps.
pub trait InPercent: Serialize + DeserializeOwned {
    type Percent: Serialize + DeserializeOwned;
    fn to_percent(&self) -> Self::Percent;
    fn from_percent(percent: Self::Percent) -> Result<Self, InvalidWeight>;
}

impl InPercent for Weight {
    type Percent = f64;

    fn to_percent(&self) -> f64 {
        self.percent()
    }

    fn from_percent(percent: f64) -> Result<Weight, InvalidWeight> {
        Weight::from_percent(percent)
    }
}

impl InPercent for Vec<Weight> {
    type Percent = Vec<f64>;

    fn to_percent(&self) -> Vec<f64> {
        self.iter().map(|w| w.percent()).collect()
    }

    fn from_percent(percents: Vec<f64>) -> Result<Vec<Weight>, InvalidWeight> {
        percents.into_iter().map(Weight::from_percent).collect()
    }
}

/// `value` as its two fields, `[bp key, percent key]`; nothing for None.
/// Used through `#[serde(flatten, with = ...)]`, so the fields land in the
/// struct that holds the value.
fn write<S: Serializer, T: InPercent>(
    keys: &[&'static str; 2],
    value: Option<&T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    let mut map = s.serialize_map(None)?;
    if let Some(value) = value {
        map.serialize_entry(keys[0], value)?;
        map.serialize_entry(keys[1], &value.to_percent())?;
    }
    map.end()
}

/// The value from its two fields, the basis points first; None when
/// neither is there.
fn read<'de, D: Deserializer<'de>, T: InPercent>(
    keys: &'static [&'static str; 2],
    d: D,
) -> Result<Option<T>, D::Error> {
    struct Fields<T>(&'static [&'static str; 2], PhantomData<T>);

    impl<'de, T: InPercent> Visitor<'de> for Fields<T> {
        type Value = Option<T>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "{} or {}", self.0[0], self.0[1])
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<T>, A::Error> {
            let (mut bp, mut percent) = (None, None);
            while let Some(key) = map.next_key::<String>()? {
                if key == self.0[0] {
                    bp = Some(map.next_value::<T>()?);
                } else if key == self.0[1] {
                    percent = Some(map.next_value::<T::Percent>()?);
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            match (bp, percent) {
                (Some(bp), _) => Ok(Some(bp)),
                (None, Some(percent)) => T::from_percent(percent)
                    .map(Some)
                    .map_err(|e| de::Error::custom(format_args!("{}: {e}", self.0[1]))),
                (None, None) => Ok(None),
            }
        }
    }

    // A struct with just these fields: flattened, it takes only them.
    d.deserialize_struct("weight fields", keys, Fields(keys, PhantomData))
}

/// A field pair that every answer of its struct has.
macro_rules! required {
    ($(#[$doc:meta])* $name:ident: $t:ty, $bp:literal, $percent:literal) => {
        $(#[$doc])*
        pub mod $name {
            use super::*;

            const KEYS: &[&str; 2] = &[$bp, $percent];

            pub fn serialize<S: Serializer>(value: &$t, s: S) -> Result<S::Ok, S::Error> {
                write(KEYS, Some(value), s)
            }

            pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<$t, D::Error> {
                read(KEYS, d)?.ok_or_else(|| de::Error::missing_field($bp))
            }
        }
    };
}

required!(
    /// A service's or a rollout's weight: `weight_bp`, `weight_percent`.
    weight: Weight, "weight_bp", "weight_percent"
);
required!(
    /// A rollout's steps: `steps_bp`, `steps_percent`.
    steps: Vec<Weight>, "steps_bp", "steps_percent"
);
required!(
    /// The weight a set-weight replaced: `previous_weight_bp`,
    /// `previous_percent`.
    previous: Weight, "previous_weight_bp", "previous_percent"
);
required!(
    /// The weight a set-weight set: `weight_bp`, `percent`.
    set: Weight, "weight_bp", "percent"
);

/// A service's config weight: `config_weight_bp`, `config_weight_percent`,
/// both absent when unknown.
pub mod config_weight {
    use super::*;

    const KEYS: &[&str; 2] = &["config_weight_bp", "config_weight_percent"];

    pub fn serialize<S: Serializer>(value: &Option<Weight>, s: S) -> Result<S::Ok, S::Error> {
        write(KEYS, value.as_ref(), s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Weight>, D::Error> {
        read(KEYS, d)
    }
}

/// A set-weight request's fields as they come, before they are a weight.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetWeightFields {
    service: String,
    weight_bp: Option<u64>,
    /// Deprecated: older canaryctl's percent.
    percent: Option<f64>,
}

/// Why a set-weight request has no weight.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SetWeightError {
    #[error("set-weight takes weight_bp or, from an older client, percent; this request has both")]
    Both,
    #[error(
        "set-weight needs weight_bp: the canary's share in basis points, 0 to 10000 (1250 is 12.5 %)"
    )]
    Neither,
    #[error("weight_bp: a weight is 0 to 10000 basis points; found {0}")]
    OutOfRange(u64),
    /// As daemons that took only a percent said it.
    #[error("percent {percent}: {0}", percent = .0.0)]
    Percent(InvalidWeight),
}

impl SetWeightError {
    /// Whether the request was well formed and only its value was wrong
    /// (`invalid_weight`, not `bad_request`).
    pub fn is_value(&self) -> bool {
        matches!(
            self,
            SetWeightError::OutOfRange(_) | SetWeightError::Percent(_)
        )
    }
}

impl SetWeightFields {
    fn weight(&self) -> Result<Weight, SetWeightError> {
        match (self.weight_bp, self.percent) {
            (Some(_), Some(_)) => Err(SetWeightError::Both),
            (None, None) => Err(SetWeightError::Neither),
            (Some(bp), None) => u16::try_from(bp)
                .ok()
                .and_then(Weight::from_bp)
                .ok_or(SetWeightError::OutOfRange(bp)),
            (None, Some(percent)) => Weight::from_percent(percent).map_err(SetWeightError::Percent),
        }
    }
}

/// The `set-weight` request's fields: `service` and `weight_bp`; for one
/// release `percent` instead, as older canaryctl sends it.
pub mod request {
    use super::*;

    pub fn serialize<S: Serializer>(
        service: &String,
        weight: &Weight,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Fields<'a> {
            service: &'a str,
            weight_bp: Weight,
        }
        Fields {
            service,
            weight_bp: *weight,
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<(String, Weight), D::Error> {
        let fields = SetWeightFields::deserialize(d)?;
        let weight = fields.weight().map_err(de::Error::custom)?;
        Ok((fields.service, weight))
    }
}

/// Why `line`, a request that did not read, is a set-weight whose only
/// fault is its weight's value; None for any other fault.
pub fn value_error(line: &str) -> Option<SetWeightError> {
    #[derive(Deserialize)]
    #[serde(tag = "command", rename_all = "kebab-case")]
    enum Line {
        SetWeight(SetWeightFields),
    }
    let Line::SetWeight(fields) = serde_json::from_str(line).ok()?;
    fields.weight().err().filter(SetWeightError::is_value)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::api::{
        ErrorCode, Refusal, Request, RolloutReport, ServiceStatus, WeightSet, WeightSource,
    };
    use crate::model::{
        kinds::{Affinity, Mode, OnRollback, Protocol},
        rollout::Phase,
        weight::Weight,
    };

    fn bp(bp: u16) -> Weight {
        Weight::from_bp(bp).unwrap()
    }

    fn set_weight(service: &str, weight: Weight) -> Request {
        Request::SetWeight {
            service: service.into(),
            weight,
        }
    }

    fn refused(line: &str) -> Refusal {
        Request::decode(line).unwrap_err()
    }

    #[test]
    fn a_set_weight_travels_as_basis_points() {
        let line = r#"{"command":"set-weight","service":"s","weight_bp":1250}"#;
        assert_eq!(Request::decode(line), Ok(set_weight("s", bp(1250))));
        assert_eq!(
            serde_json::to_string(&set_weight("s", bp(1250))).unwrap(),
            line
        );
        for (bp_text, want) in [("0", Weight::ZERO), ("10000", Weight::FULL)] {
            let line = format!(r#"{{"command":"set-weight","service":"s","weight_bp":{bp_text}}}"#);
            assert_eq!(Request::decode(&line), Ok(set_weight("s", want)));
        }
    }

    #[test]
    fn an_older_clients_percent_is_still_read() {
        let line = r#"{"command":"set-weight","service":"s","percent":12.5}"#;
        assert_eq!(Request::decode(line), Ok(set_weight("s", bp(1250))));
        let line = r#"{"command":"set-weight","service":"s","percent":5}"#;
        assert_eq!(Request::decode(line), Ok(set_weight("s", bp(500))));
    }

    #[test]
    fn both_weights_or_neither_is_a_bad_request() {
        let both =
            refused(r#"{"command":"set-weight","service":"s","weight_bp":1250,"percent":12.5}"#);
        assert_eq!(both.code, ErrorCode::BadRequest);
        assert!(
            both.message
                .contains("set-weight takes weight_bp or, from an older client, percent; this request has both"),
            "{}",
            both.message
        );
        let neither = refused(r#"{"command":"set-weight","service":"s"}"#);
        assert_eq!(neither.code, ErrorCode::BadRequest);
        assert!(
            neither.message.contains("set-weight needs weight_bp"),
            "{}",
            neither.message
        );
    }

    #[test]
    fn a_weight_out_of_range_is_an_invalid_weight() {
        for (line, says) in [
            (
                r#"{"command":"set-weight","service":"s","weight_bp":10001}"#,
                "weight_bp: a weight is 0 to 10000 basis points; found 10001",
            ),
            (
                r#"{"command":"set-weight","service":"s","weight_bp":70000}"#,
                "weight_bp: a weight is 0 to 10000 basis points; found 70000",
            ),
            // What daemons before basis points answered.
            (
                r#"{"command":"set-weight","service":"s","percent":150}"#,
                "percent 150: weight must be a percent from 0 to 100 with at most two decimals, e.g. 12.5; found 150",
            ),
            (
                r#"{"command":"set-weight","service":"s","percent":12.345}"#,
                "percent 12.345: weight must be a percent from 0 to 100 with at most two decimals, e.g. 12.5; found 12.345",
            ),
        ] {
            assert_eq!(
                refused(line),
                Refusal {
                    code: ErrorCode::InvalidWeight,
                    message: says.into()
                },
                "{line}"
            );
        }
    }

    /// Whatever a client sends, the answer is a refusal, never a panic.
    #[test]
    fn odd_set_weights_are_bad_requests() {
        for line in [
            r#"{"command":"set-weight","service":"s","weight_bp":-1}"#,
            r#"{"command":"set-weight","service":"s","weight_bp":12.5}"#,
            r#"{"command":"set-weight","service":"s","weight_bp":"1250"}"#,
            r#"{"command":"set-weight","service":"s","weight_bp":null}"#,
            r#"{"command":"set-weight","service":"s","percent":"12.5"}"#,
            r#"{"command":"set-weight","weight_bp":1250}"#,
            r#"{"command":"set-weight","service":"s","weight_bp":1250,"force":true}"#,
            r#"{"command":"set-weight","service":"s","percent":5,"force":true}"#,
            r#"{"command":"set-weight","service":"s","weight_bp":1e400}"#,
            r#"{"command":"set-weight"}"#,
            r#"{"command":"set-weight","service":"s","weight_bp":1250"#,
        ] {
            assert_eq!(refused(line).code, ErrorCode::BadRequest, "{line}");
        }
        // A null percent is no percent: the request has weight_bp alone.
        let line = r#"{"command":"set-weight","service":"s","weight_bp":5,"percent":null}"#;
        assert_eq!(Request::decode(line), Ok(set_weight("s", bp(5))));
    }

    fn service_status(config_weight: Option<Weight>) -> ServiceStatus {
        ServiceStatus {
            name: "s".into(),
            listen: "198.18.0.1:80".into(),
            protocol: Protocol::Tcp,
            affinity: Affinity::Flow,
            weight: bp(1250),
            weight_source: WeightSource::Runtime,
            config_weight,
            stable: Default::default(),
            canary: Default::default(),
            problem: None,
            rollout: None,
        }
    }

    #[test]
    fn status_carries_each_weight_in_basis_points_and_as_the_old_percent() {
        let s = service_status(Some(bp(500)));
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["weight_bp"], json!(1250));
        assert_eq!(v["weight_percent"], json!(12.5));
        assert_eq!(v["config_weight_bp"], json!(500));
        assert_eq!(v["config_weight_percent"], json!(5.0));
        assert_eq!(serde_json::from_value::<ServiceStatus>(v).unwrap(), s);
        // Unknown: neither field.
        let v = serde_json::to_value(service_status(None)).unwrap();
        assert!(v.get("config_weight_bp").is_none() && v.get("config_weight_percent").is_none());
        assert_eq!(
            serde_json::from_value::<ServiceStatus>(v).unwrap(),
            service_status(None)
        );
    }

    /// What a daemon of the release before sent: percent fields only.
    #[test]
    fn an_older_daemons_percent_answers_still_read() {
        let mut v = serde_json::to_value(service_status(Some(bp(500)))).unwrap();
        let o = v.as_object_mut().unwrap();
        o.remove("weight_bp");
        o.remove("config_weight_bp");
        assert_eq!(
            serde_json::from_value::<ServiceStatus>(v).unwrap(),
            service_status(Some(bp(500)))
        );
        let old: WeightSet =
            serde_json::from_str(r#"{"service":"s","previous_percent":100.0,"percent":12.34}"#)
                .unwrap();
        assert_eq!((old.previous, old.weight), (Weight::FULL, bp(1234)));
        // Basis points win over a percent that says otherwise.
        let both: WeightSet = serde_json::from_str(
            r#"{"service":"s","previous_weight_bp":0,"previous_percent":100.0,"weight_bp":5,"percent":12.34}"#,
        )
        .unwrap();
        assert_eq!((both.previous, both.weight), (Weight::ZERO, bp(5)));
        let bad = serde_json::from_str::<WeightSet>(
            r#"{"service":"s","previous_percent":100.0,"percent":150}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(bad.contains("percent: weight must be a percent"), "{bad}");
        let none = serde_json::from_str::<WeightSet>(r#"{"service":"s","previous_weight_bp":0}"#)
            .unwrap_err()
            .to_string();
        assert!(none.contains("missing field `weight_bp`"), "{none}");
    }

    #[test]
    fn set_weight_and_rollout_answers_carry_both_fields() {
        let w = WeightSet {
            service: "s".into(),
            previous: Weight::FULL,
            weight: bp(1234),
            warnings: vec![],
        };
        let v = serde_json::to_value(&w).unwrap();
        assert_eq!(
            v,
            json!({"service": "s", "previous_weight_bp": 10000, "previous_percent": 100.0,
                   "weight_bp": 1234, "percent": 12.34})
        );
        assert_eq!(serde_json::from_value::<WeightSet>(v).unwrap(), w);

        let r = RolloutReport {
            service: "s".into(),
            phase: Phase::Running,
            reason: String::new(),
            mode: Mode::Enforce,
            on_rollback: OnRollback::Drain,
            step: 1,
            steps: vec![bp(500), bp(1000), Weight::FULL],
            weight: bp(1000),
            observed_canary_share: None,
            interval_ms: 30_000,
            looks: 1,
            failed: 0,
            failed_checks_limit: 2,
            inconclusive_streak: 0,
            max_inconclusive: 5,
            started_unix_ms: 0,
            next_at_unix_ms: 0,
            history: vec![],
            rollbacks: 0,
            hosts: None,
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["steps_bp"], json!([500, 1000, 10000]));
        assert_eq!(v["steps_percent"], json!([5.0, 10.0, 100.0]));
        assert_eq!(v["weight_bp"], json!(1000));
        assert_eq!(v["weight_percent"], json!(10.0));
        assert_eq!(v["step"], json!(1));
        assert_eq!(
            serde_json::from_value::<RolloutReport>(v.clone()).unwrap(),
            r
        );
        let mut old: Value = v;
        let o = old.as_object_mut().unwrap();
        o.remove("steps_bp");
        o.remove("weight_bp");
        assert_eq!(serde_json::from_value::<RolloutReport>(old).unwrap(), r);
    }
}
