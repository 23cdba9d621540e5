//! The PromQL gates' client: one instant query, a timeout, a typed answer.
//! Blocking (ureq): the driver runs it off the async runtime's thread.

use std::time::Duration;

use serde::Deserialize;

/// How long one query may take, connection included.
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

/// Why a gate's query gave no value.
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
                url: url.clone(),
                detail: e.to_string(),
            })?;
    let status = response.status().as_u16();
    let answer: Answer =
        response
            .body_mut()
            .read_json()
            .map_err(|e| QueryError::NotPrometheus {
                url: url.clone(),
                status,
                detail: e.to_string(),
            })?;
    if answer.status != "success" {
        return Err(QueryError::Refused {
            status: answer.status,
            error: answer.error.unwrap_or_default(),
        });
    }
    let number = |text: &str| {
        text.parse::<f64>()
            .map_err(|e| QueryError::Shape(format!("value {text:?}: {e}")))
            .and_then(|v| {
                if v.is_nan() {
                    Err(QueryError::Shape("the value is NaN".to_owned()))
                } else {
                    Ok(v)
                }
            })
    };
    match answer.data {
        Some(Data::Vector(samples)) => match samples.as_slice() {
            [] => Ok(None),
            [one] => number(&one.value.1).map(Some),
            many => Err(QueryError::Shape(format!(
                "{} series came back; a gate's query must give one (aggregate it, e.g. with avg())",
                many.len()
            ))),
        },
        Some(Data::Scalar((_, v))) => number(&v).map(Some),
        Some(Data::Matrix(_) | Data::String(_)) => Err(QueryError::Shape(
            "a range or string result; a gate's query must give one number".into(),
        )),
        None => Err(QueryError::Shape("a success without data".into())),
    }
}
