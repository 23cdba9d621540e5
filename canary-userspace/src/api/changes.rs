//! What a reload changes, service by service, old -> new, and the one-line
//! description of a service that start-up logs and a reload shows for a
//! service it adds or removes. Pure: the daemon logs and answers with it.

use std::net::SocketAddr;

use crate::{
    api::{Change, WeightSource},
    model::{kinds::AppProtocol, service::ServiceSpec, weight::Weight},
};

/// A service as registered, with where its weight came from.
#[derive(Clone, Copy, Debug)]
pub struct Sourced<'a> {
    pub spec: &'a ServiceSpec,
    pub source: WeightSource,
}

/// Borrowed views of owned (spec, source) pairs.
pub fn view(v: &[(ServiceSpec, WeightSource)]) -> Vec<Sourced<'_>> {
    v.iter()
        .map(|(spec, source)| Sourced {
            spec,
            source: *source,
        })
        .collect()
}

/// `5.00% (config)`
pub fn weight(weight: Weight, source: WeightSource) -> String {
    format!("{weight:.2} ({source})")
}

/// Backends separated by spaces: `198.18.0.1:8081 198.18.0.1:8082`.
pub fn backends(set: &[SocketAddr]) -> String {
    let v: Vec<String> = set.iter().map(SocketAddr::to_string).collect();
    v.join(" ")
}

/// `198.18.0.1:80/tcp, affinity flow, stable A, canary B, weight 5.00% (config)`;
/// `app_protocol h2c` after the affinity when it is not the default, `auto`.
pub fn summary(s: Sourced) -> String {
    let spec = s.spec;
    let app = match spec.app_protocol {
        AppProtocol::Auto => String::new(),
        other => format!(", app_protocol {other}"),
    };
    format!(
        "{}/{}, affinity {}{app}, stable {}, canary {}, weight {}",
        spec.vip,
        spec.protocol,
        spec.affinity,
        backends(&spec.stable),
        backends(&spec.canary),
        weight(spec.weight, s.source)
    )
}

/// Every difference between `old` and `new`: removed services first, then
/// added ones and changed keys in `new`'s order.
pub fn between(old: &[Sourced], new: &[Sourced]) -> Vec<Change> {
    let change = |service: &str, field: &str, old: Option<String>, new: Option<String>| Change {
        service: service.to_owned(),
        field: field.to_owned(),
        old,
        new,
    };
    let mut out = vec![];
    for o in old {
        if !new.iter().any(|n| n.spec.name == o.spec.name) {
            out.push(change(&o.spec.name, "service", Some(summary(*o)), None));
        }
    }
    for n in new {
        let name = &n.spec.name;
        let Some(o) = old.iter().find(|o| &o.spec.name == name) else {
            out.push(change(name, "service", None, Some(summary(*n))));
            continue;
        };
        let (a, b) = (o.spec, n.spec);
        let mut differs = |field: &str, old: String, new: String| {
            if old != new {
                out.push(change(name, field, Some(old), Some(new)));
            }
        };
        differs("listen", a.vip.to_string(), b.vip.to_string());
        differs("protocol", a.protocol.to_string(), b.protocol.to_string());
        differs("affinity", a.affinity.to_string(), b.affinity.to_string());
        differs(
            "app_protocol",
            a.app_protocol.to_string(),
            b.app_protocol.to_string(),
        );
        differs("stable", backends(&a.stable), backends(&b.stable));
        differs("canary", backends(&a.canary), backends(&b.canary));
        differs(
            "weight",
            weight(a.weight, o.source),
            weight(b.weight, n.source),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kinds::{Affinity, Protocol};

    fn spec(name: &str, weight_bp: u16) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            vip: "198.18.0.1:80".parse().unwrap(),
            protocol: Protocol::Tcp,
            affinity: Affinity::Flow,
            app_protocol: Default::default(),
            stable: vec!["198.18.0.1:8081".parse().unwrap()],
            canary: vec!["198.18.0.1:8082".parse().unwrap()],
            weight: Weight::from_bp(weight_bp).unwrap(),
        }
    }

    fn with(spec: &ServiceSpec, source: WeightSource) -> Sourced<'_> {
        Sourced { spec, source }
    }

    #[test]
    fn a_runtime_weight_replaced_by_the_config_says_both() {
        let old = spec("model", 2500);
        let new = spec("model", 1000);
        let c = between(
            &[with(&old, WeightSource::Runtime)],
            &[with(&new, WeightSource::Config)],
        );
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(
            c[0].to_string(),
            "~ model: weight 25.00% (runtime) -> 10.00% (config)"
        );
    }

    #[test]
    fn added_removed_and_backends_are_listed_and_the_same_is_silent() {
        let (a, gone) = (spec("a", 0), spec("gone", 0));
        let mut a2 = spec("a", 0);
        a2.canary.push("198.18.0.1:8083".parse().unwrap());
        let added = spec("new", 500);
        let c = between(
            &[
                with(&a, WeightSource::Config),
                with(&gone, WeightSource::Config),
            ],
            &[
                with(&a2, WeightSource::Config),
                with(&added, WeightSource::Config),
            ],
        );
        let text: Vec<String> = c.iter().map(Change::to_string).collect();
        assert_eq!(
            text,
            [
                "- gone: 198.18.0.1:80/tcp, affinity flow, stable 198.18.0.1:8081, canary 198.18.0.1:8082, weight 0.00% (config)",
                "~ a: canary 198.18.0.1:8082 -> 198.18.0.1:8082 198.18.0.1:8083",
                "+ new: 198.18.0.1:80/tcp, affinity flow, stable 198.18.0.1:8081, canary 198.18.0.1:8082, weight 5.00% (config)",
            ]
        );
        let same = spec("a", 0);
        assert!(
            between(
                &[with(&same, WeightSource::Config)],
                &[with(&same, WeightSource::Config)]
            )
            .is_empty()
        );
    }

    #[test]
    fn an_app_protocol_change_is_listed_and_a_non_default_one_is_described() {
        let old = spec("model", 0);
        let mut new = spec("model", 0);
        new.app_protocol = AppProtocol::H2c;
        let c = between(
            &[with(&old, WeightSource::Config)],
            &[with(&new, WeightSource::Config)],
        );
        let text: Vec<String> = c.iter().map(Change::to_string).collect();
        assert_eq!(text, ["~ model: app_protocol auto -> h2c"]);
        assert_eq!(
            summary(with(&new, WeightSource::Config)),
            "198.18.0.1:80/tcp, affinity flow, app_protocol h2c, stable 198.18.0.1:8081, canary 198.18.0.1:8082, weight 0.00% (config)"
        );
    }
}
