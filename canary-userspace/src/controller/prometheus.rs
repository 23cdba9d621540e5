//! The PromQL gates' client: one instant query, a timeout, a typed answer.
//! Blocking (ureq): the driver runs it off the async runtime's thread.

use std::time::Duration;

use serde::Deserialize;

use crate::model::redact::redact;

/// How long a look waits for its gates, connection included: the driver
/// queries them all at once, with this one deadline.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// Prometheus' `/api/v1/query` answer, as far as a gate needs it.
#[derive(Debug, Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    data: Option<Data>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum Data {
    Vector(Vec<Sample>),
    Scalar((f64, String)),
    Matrix(serde::de::IgnoredAny),
    String(serde::de::IgnoredAny),
}

#[derive(Debug, Deserialize)]
struct Sample {
    value: (f64, String),
}

/// Why a gate's query gave no value. URLs in it are redacted (`redact`):
/// it goes into logs and the rollout's history.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    #[error("GET {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("GET {url}: HTTP {status}, not a Prometheus answer: {detail}")]
    NotPrometheus {
        url: String,
        status: u16,
        detail: String,
    },
    #[error("Prometheus answered {status}: {error}")]
    Refused { status: String, error: String },
    #[error("the query's answer is not one number: {0}")]
    Shape(String),
}

/// Runs `query` at `base` (e.g. `http://127.0.0.1:9090`): `Ok(None)` for an
/// empty result, the value of a scalar or of a one-sample vector, and an
/// error (with what went wrong) for anything else, so a gate can tell "no
/// data" from "failed" and count both as inconclusive.
pub fn query(base: &str, query: &str, timeout: Duration) -> Result<Option<f64>, QueryError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("{base}/api/v1/query");
    let mut response =
        agent
            .get(&url)
            .query("query", query)
            .call()
            .map_err(|e| QueryError::Unreachable {
                url: redact(&url),
                detail: redact(&e.to_string()),
            })?;
    let status = response.status().as_u16();
    let answer: Answer =
        response
            .body_mut()
            .read_json()
            .map_err(|e| QueryError::NotPrometheus {
                url: redact(&url),
                status,
                detail: redact(&e.to_string()),
            })?;
    if answer.status != "success" {
        return Err(QueryError::Refused {
            status: answer.status,
            error: answer.error.unwrap_or_default(),
        });
    }
    match answer.data {
        Some(Data::Vector(samples)) => match samples.as_slice() {
            [] => Ok(None),
            [one] => gate_value(&one.value.1).map(Some),
            many => Err(QueryError::Shape(format!(
                "{} series came back; a gate's query must give one (aggregate it, e.g. with avg())",
                many.len()
            ))),
        },
        Some(Data::Scalar((_, v))) => gate_value(&v).map(Some),
        Some(Data::Matrix(_) | Data::String(_)) => Err(QueryError::Shape(
            "a range or string result; a gate's query must give one number".into(),
        )),
        None => Err(QueryError::Shape("a success without data".into())),
    }
}

/// A sample's value as Prometheus writes it (`"0.97"`, `"+Inf"`, `"NaN"`):
/// only a finite number can be judged. A ratio over a zero count gives
/// +Inf or NaN, which would pass a `min` gate or never fail one.
fn gate_value(text: &str) -> Result<f64, QueryError> {
    let v = text
        .parse::<f64>()
        .map_err(|e| QueryError::Shape(format!("value {text:?}: {e}")))?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(QueryError::Shape(format!(
            "the value is {text}, not a finite number (a division by zero?)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_finite_values_are_gate_values() {
        assert_eq!(gate_value("0.97"), Ok(0.97));
        assert_eq!(gate_value("-3e2"), Ok(-300.0));
        for odd in ["+Inf", "-Inf", "Inf", "NaN", "nan"] {
            let e = gate_value(odd).unwrap_err().to_string();
            assert!(e.contains(odd) && e.contains("not a finite number"), "{e}");
        }
        assert!(gate_value("many").is_err());
    }
}
