//! A checked config written back as TOML: what tests, the demo and the
//! bench hand to a real canaryd, so no one builds config text by hand.

use toml::{Table, Value};

use super::{Config, DaemonConfig, FleetConfig};
use crate::{controller::plan::RolloutPlan, model::service::ServiceSpec};

impl Config {
    /// The config as a TOML file that `config::parse` reads back equal.
    pub fn to_toml(&self) -> String {
        let mut root = Table::new();
        root.insert("daemon".into(), Value::Table(daemon_table(&self.daemon)));
        if !self.services.is_empty() {
            let services = self
                .services
                .iter()
                .map(|s| service_table(s, self.rollouts.get(&s.name)))
                .collect();
            root.insert("service".into(), Value::Array(services));
        }
        if let Some(fleet) = &self.fleet {
            root.insert("fleet".into(), Value::Table(fleet_table(fleet)));
        }
        toml::to_string(&root).expect("a table of strings, numbers and arrays always renders")
    }
}

fn strings<T: ToString>(items: &[T]) -> Value {
    Value::Array(items.iter().map(|i| Value::String(i.to_string())).collect())
}

fn path(p: &std::path::Path) -> Value {
    Value::String(p.display().to_string())
}

fn fleet_table(f: &FleetConfig) -> Table {
    let mut t = Table::new();
    t.insert("etcd".into(), strings(&f.etcd));
    t.insert("name".into(), Value::String(f.name.clone()));
    t.insert("host".into(), Value::String(f.host.clone()));
    let ms = |d: std::time::Duration| Value::String(format!("{}ms", d.as_millis()));
    t.insert("lease_ttl".into(), ms(f.lease_ttl));
    t.insert("grace".into(), ms(f.grace));
    t.insert("publish".into(), ms(f.publish));
    t
}

fn daemon_table(d: &DaemonConfig) -> Table {
    let mut t = Table::new();
    let interfaces = d
        .interfaces
        .iter()
        .map(|name| match d.hooks.get(name) {
            // Only an interface off the default hook needs the table form.
            Some(hook) => {
                let mut entry = Table::new();
                entry.insert("name".into(), Value::String(name.clone()));
                entry.insert("hook".into(), Value::String(hook.to_string()));
                Value::Table(entry)
            }
            None => Value::String(name.clone()),
        })
        .collect();
    t.insert("interfaces".into(), Value::Array(interfaces));
    t.insert("socket".into(), path(&d.socket));
    t.insert(
        "metrics_listen".into(),
        Value::String(d.metrics_listen.to_string()),
    );
    t.insert("bpffs".into(), path(&d.bpffs));
    t.insert("state_dir".into(), path(&d.state_dir));
    t.insert(
        "log_level".into(),
        Value::String(d.log_level.to_string().to_lowercase()),
    );
    t.insert(
        "flow_table_size".into(),
        Value::Integer(d.flow_table_size.into()),
    );
    t.insert(
        "udp_idle_timeout".into(),
        Value::String(format!("{}ms", d.udp_idle_timeout.as_millis())),
    );
    t.insert("signals".into(), Value::Boolean(d.signals));
    t.insert(
        "latency_sampling".into(),
        Value::Boolean(d.latency_sampling),
    );
    t.insert("failsafe".into(), Value::String(d.failsafe.to_string()));
    t.insert(
        "failsafe_timeout".into(),
        Value::String(format!("{}ms", d.failsafe_timeout.as_millis())),
    );
    t
}

fn service_table(s: &ServiceSpec, rollout: Option<&RolloutPlan>) -> Value {
    let mut t = Table::new();
    t.insert("name".into(), Value::String(s.name.clone()));
    t.insert("listen".into(), Value::String(s.vip.to_string()));
    t.insert("protocol".into(), Value::String(s.protocol.to_string()));
    t.insert("affinity".into(), Value::String(s.affinity.to_string()));
    t.insert(
        "app_protocol".into(),
        Value::String(s.app_protocol.to_string()),
    );
    t.insert("stable".into(), strings(&s.stable));
    t.insert("canary".into(), strings(&s.canary));
    t.insert("weight".into(), Value::Float(s.weight.percent()));
    if let Some(plan) = rollout {
        t.insert("rollout".into(), Value::Table(rollout_table(plan)));
    }
    Value::Table(t)
}

fn rollout_table(p: &RolloutPlan) -> Table {
    let mut t = Table::new();
    let steps = p.steps.iter().map(|w| Value::Float(w.percent())).collect();
    t.insert("steps".into(), Value::Array(steps));
    t.insert(
        "interval".into(),
        Value::String(format!("{}ms", p.interval.as_millis())),
    );
    let int = |n: u64| Value::Integer(n as i64);
    t.insert("min_requests".into(), int(p.min_requests));
    t.insert(
        "failed_checks_limit".into(),
        int(p.failed_checks_limit.into()),
    );
    t.insert(
        "consecutive_failures".into(),
        int(p.consecutive_failures.into()),
    );
    t.insert("min_passes".into(), int(p.min_passes.into()));
    t.insert("max_inconclusive".into(), int(p.max_inconclusive.into()));
    if let Some(d) = p.max_step_duration {
        t.insert(
            "max_step_duration".into(),
            Value::String(format!("{}ms", d.as_millis())),
        );
    }
    t.insert("mode".into(), Value::String(p.mode.to_string()));
    t.insert(
        "on_rollback".into(),
        Value::String(p.on_rollback.to_string()),
    );
    let c = &p.checks;
    for (key, v) in [
        ("max_error_rate", c.max_error_rate),
        ("max_error_ratio", c.max_error_ratio),
        ("max_p99_ms", c.max_p99_ms),
        ("max_p99_ratio", c.max_p99_ratio),
        ("error_margin", Some(c.error_margin)),
        ("p99_margin_ms", Some(c.p99_margin_ms)),
        ("alpha", Some(p.alpha)),
    ] {
        if let Some(v) = v {
            t.insert(key.into(), Value::Float(v));
        }
    }
    t.insert(
        "grpc_error_codes".into(),
        strings(&p.grpc_error_codes.names()),
    );
    for (key, v) in [("prometheus", &p.prometheus), ("webhook", &p.webhook)] {
        if let Some(v) = v {
            t.insert(key.into(), Value::String(v.clone()));
        }
    }
    if !p.gates.is_empty() {
        let gates = p
            .gates
            .iter()
            .map(|g| {
                let mut gt = Table::new();
                gt.insert("name".into(), Value::String(g.name.clone()));
                gt.insert("query".into(), Value::String(g.query.clone()));
                for (key, v) in [("min", g.min), ("max", g.max)] {
                    if let Some(v) = v {
                        gt.insert(key.into(), Value::Float(v));
                    }
                }
                Value::Table(gt)
            })
            .collect();
        t.insert("gate".into(), Value::Array(gates));
    }
    t
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    #[test]
    fn a_rendered_config_parses_back_equal() {
        // The packaged example sets every key the file has.
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging/canary.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let any = |_: &str| true;
        let mut config = parse(&text, path, &any).unwrap();
        // And the kinds the example leaves at their defaults.
        config.services[0].protocol = crate::model::kinds::Protocol::Udp;
        config.services[0].affinity = crate::model::kinds::Affinity::Client;
        config.services[0].app_protocol = crate::model::kinds::AppProtocol::None;
        config.services[0].vip = "[2001:db8::1]:443".parse().unwrap();
        config.services[0].stable = vec!["[2001:db8::2]:8443".parse().unwrap()];
        config.services[0].canary = vec!["[2001:db8::3]:8443".parse().unwrap()];
        config.services[0].weight = "12.34".parse().unwrap();
        let plan = config.rollouts.get_mut("sentiment").unwrap();
        plan.grpc_error_codes = crate::model::grpc_code::GrpcCodes::from_codes([8, 14]).unwrap();
        let first = config.daemon.interfaces[0].clone();
        config.daemon.interfaces.push("veth0".into());
        config
            .daemon
            .hooks
            .insert(first, crate::model::kinds::Hook::Tc);
        // A [fleet] with no key at its default: a sub-second publish, a
        // host that is not this machine's.
        config.fleet = Some(crate::config::FleetConfig {
            etcd: vec![
                "http://198.18.200.1:2379".into(),
                "http://etcd-2.example:2379".into(),
            ],
            name: "iris".into(),
            host: "node-7".into(),
            lease_ttl: std::time::Duration::from_secs(7),
            grace: std::time::Duration::from_secs(45),
            publish: std::time::Duration::from_millis(250),
        });
        let again = parse(&config.to_toml(), "rendered.toml", &any).unwrap();
        assert_eq!(again, config);
    }
}
