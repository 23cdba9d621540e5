//! A model server: `GET /predict?x=SL,SW,PL,PW` answers the predicted iris
//! class as its body, naming its version in `X-Version` (as a real model
//! server reports the model that answered). The canary can carry a fault.

use std::{net::SocketAddr, sync::Arc, thread, time::Duration};

use anyhow::Result;
use xtask::topology::Netns;

use super::model::{CLASSES, FEATURES, Model};
use crate::ns_http::{NsHttpServer, header};

/// Worker threads per server: enough that a slow model's sleeping
/// requests do not queue the others behind them.
const WORKERS: usize = 32;

/// The widest sepal (cm) the faulty canary's input validation accepts: its
/// schema check was written from the training set's typical range, so it
/// rejects real inputs above it (about one sample in five).
pub const REJECT_SEPAL_WIDTH_ABOVE: f64 = 3.3;

/// What is wrong with a version, if anything. (A less accurate model is a
/// different `Model`, not a fault of the server.)
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    None,
    /// Answers 500 to inputs whose sepal width is above
    /// `REJECT_SEPAL_WIDTH_ABOVE`.
    RejectsInputs,
    /// Takes this much longer per prediction (a bigger model on the same
    /// CPU); the demo sleeps rather than burns the 2 shared cores.
    Slower(Duration),
}

/// Serves `model` on `addr` in `ns`; one model may back many servers (a
/// fleet's hosts each serve the same two).
pub fn start<'a>(
    ns: &'a Netns,
    addr: SocketAddr,
    version: &'static str,
    model: impl Into<Arc<Model>>,
    fault: Fault,
) -> Result<NsHttpServer<'a>> {
    let model = model.into();
    NsHttpServer::start(ns, addr, WORKERS, move |request| {
        let (status, body) = answer(&model, fault, request.url());
        let response = tiny_http::Response::from_string(body)
            .with_status_code(status)
            .with_header(header("X-Version", version))
            .with_header(header("Content-Type", "text/plain"));
        // A client that went away is not the server's problem.
        let _ = request.respond(response);
    })
}

/// The status and body for one request target.
fn answer(model: &Model, fault: Fault, url: &str) -> (u16, String) {
    let Some(features) = parse_features(url) else {
        return (400, "want GET /predict?x=SL,SW,PL,PW (cm)\n".into());
    };
    match fault {
        Fault::RejectsInputs if features[1] > REJECT_SEPAL_WIDTH_ABOVE => {
            return (500, "input out of range: sepal width\n".into());
        }
        Fault::Slower(extra) => thread::sleep(extra),
        _ => {}
    }
    (200, CLASSES[model.predict(&features)].to_owned())
}

/// `/predict?x=a,b,c,d` with four finite numbers.
fn parse_features(url: &str) -> Option<[f64; FEATURES]> {
    let list = url.strip_prefix("/predict?x=")?;
    let mut features = [0.0; FEATURES];
    let mut parts = list.split(',');
    for f in features.iter_mut() {
        *f = parts.next()?.parse().ok().filter(|v: &f64| v.is_finite())?;
    }
    parts.next().is_none().then_some(features)
}

/// The request target for a sample.
pub fn target(features: &[f64; FEATURES]) -> String {
    let list: Vec<String> = features.iter().map(|v| v.to_string()).collect();
    format!("/predict?x={}", list.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::model::{Data, Recipe};

    #[test]
    fn parses_exactly_four_finite_features() {
        assert_eq!(
            parse_features("/predict?x=5.1,3.5,1.4,0.2"),
            Some([5.1, 3.5, 1.4, 0.2])
        );
        for bad in [
            "/predict?x=5.1,3.5,1.4",
            "/predict?x=5.1,3.5,1.4,0.2,1",
            "/predict?x=5.1,NaN,1.4,0.2",
            "/predict?x=5.1,inf,1.4,0.2",
            "/predict?x=a,b,c,d",
            "/",
        ] {
            assert_eq!(parse_features(bad), None, "{bad}");
        }
        assert_eq!(
            parse_features(&target(&[6.0, 2.5, 4.0, 1.25])),
            Some([6.0, 2.5, 4.0, 1.25])
        );
    }

    #[test]
    fn the_faulty_canary_rejects_about_one_input_in_five() {
        let data = Data::load();
        let model = Model::train(&data, Recipe::Gini).unwrap();
        let rejected = data
            .held_out
            .iter()
            .filter(|s| answer(&model, Fault::RejectsInputs, &target(&s.features)).0 == 500)
            .count();
        let share = rejected as f64 / data.held_out.len() as f64;
        assert!((0.1..=0.3).contains(&share), "{share}");
        let healthy = data
            .held_out
            .iter()
            .filter(|s| answer(&model, Fault::None, &target(&s.features)).0 == 200)
            .count();
        assert_eq!(healthy, data.held_out.len());
    }
}
