//! A checked config written back as TOML: what tests, the demo and the
//! bench hand to a real canaryd, so no one builds config text by hand.

use toml::{Table, Value};

use super::{Config, DaemonConfig};
use crate::{api::bp_to_percent, service::ServiceSpec};

impl Config {
    /// The config as a TOML file that `config::parse` reads back equal.
    pub fn to_toml(&self) -> String {
        let mut root = Table::new();
        root.insert("daemon".into(), Value::Table(daemon_table(&self.daemon)));
        if !self.services.is_empty() {
            let services = self.services.iter().map(service_table).collect();
            root.insert("service".into(), Value::Array(services));
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

fn daemon_table(d: &DaemonConfig) -> Table {
    let mut t = Table::new();
    t.insert("interfaces".into(), strings(&d.interfaces));
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
    t
}

fn service_table(s: &ServiceSpec) -> Value {
    let mut t = Table::new();
    t.insert("name".into(), Value::String(s.name.clone()));
    t.insert("listen".into(), Value::String(s.vip.to_string()));
    t.insert("protocol".into(), Value::String(s.protocol.to_string()));
    t.insert("affinity".into(), Value::String(s.affinity.to_string()));
    t.insert("stable".into(), strings(&s.stable));
    t.insert("canary".into(), strings(&s.canary));
    t.insert("weight".into(), Value::Float(bp_to_percent(s.weight_bp)));
    Value::Table(t)
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    #[test]
    fn a_rendered_config_parses_back_equal() {
        let text = r#"
            [daemon]
            interfaces = ["lo"]
            socket = "/tmp/x/canary.sock"
            metrics_listen = "127.0.0.1:9999"
            bpffs = "/sys/fs/bpf/x"
            state_dir = "/tmp/x/state"
            log_level = "debug"
            flow_table_size = 1024
            udp_idle_timeout = "1500ms"

            [[service]]
            name = "a"
            listen = "198.18.0.1:80"
            protocol = "udp"
            affinity = "client"
            stable = ["198.18.0.1:8081", "198.18.0.2:8081"]
            canary = ["198.18.0.1:8082"]
            weight = 12.34

            [[service]]
            name = "b"
            listen = "[2001:db8::1]:443"
            stable = ["[2001:db8::2]:8443"]
            canary = ["[2001:db8::3]:8443"]
            weight = 0
        "#;
        let any = |_: &str| true;
        let config = parse(text, "t.toml", &any).unwrap();
        let again = parse(&config.to_toml(), "rendered.toml", &any).unwrap();
        assert_eq!(again, config);
    }
}
