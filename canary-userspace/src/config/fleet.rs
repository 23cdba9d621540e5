//! The `[fleet]` table: one rollout across many hosts, coordinated through
//! etcd (docs/FLEET.md). Absent, canaryd is a single host and keeps its
//! rollouts in its state file, as before.

use std::time::Duration;

use toml::{Table, Value};

use super::{
    duration::parse_duration,
    error::Collector,
    value::{self, join},
};

const PATH: &str = "fleet";

const KNOWN: &[&str] = &["etcd", "name", "host", "lease_ttl", "grace", "publish"];

/// Shortest lease etcd grants (its minimum TTL is 1.5 times the election
/// timeout, 1 s by default, rounded up to whole seconds).
const MIN_LEASE_TTL: Duration = Duration::from_secs(2);
/// The shortest interval between a host's publishes.
const MIN_PUBLISH: Duration = Duration::from_millis(100);

/// The `[fleet]` table, defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetConfig {
    /// etcd v3 endpoints, `http://host:port`.
    pub etcd: Vec<String>,
    /// The fleet's name: its keys are under `/canary/v1/<name>/`.
    pub name: String,
    /// This host's name in the fleet (default: the hostname).
    pub host: String,
    /// A host or leader silent this long is gone (whole seconds: etcd's
    /// lease TTL).
    pub lease_ttl: Duration,
    /// Cut off from etcd this long, a host sends new flows to stable.
    pub grace: Duration,
    /// How often a host publishes its signals (default 1 s).
    pub publish: Duration,
}

impl FleetConfig {
    /// `etcd` and `name` with every other key at its default.
    pub fn new(etcd: Vec<String>, name: &str, host: &str) -> FleetConfig {
        FleetConfig {
            etcd,
            name: name.to_owned(),
            host: host.to_owned(),
            lease_ttl: Duration::from_secs(5),
            grace: Duration::from_secs(30),
            publish: Duration::from_secs(1),
        }
    }
}

/// This machine's hostname, the default `host`.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Reads `[fleet]`; `None` when absent or when anything in it was
/// reported (the collector's errors tell the two apart).
pub(crate) fn read(errs: &mut Collector, value: Option<&Value>) -> Option<FleetConfig> {
    let table = match value? {
        Value::Table(t) => t,
        other => {
            value::wrong_type(errs, PATH, "a table ([fleet])", other);
            return None;
        }
    };
    let reported = errs.len();
    value::reject_unknown(errs, table.keys(), PATH, KNOWN);
    let etcd = endpoints(errs, table);
    let name = key_word(errs, table, "name", None);
    let host = key_word(errs, table, "host", Some(hostname()));
    let lease_ttl = duration(errs, table, "lease_ttl", "5s");
    let grace = duration(errs, table, "grace", "30s");
    let publish = duration(errs, table, "publish", "1s");
    // grace and publish are measured against lease_ttl only once it is
    // valid itself: a wrong lease_ttl is one error, not one more for each
    // key left at its default.
    let lease_ttl = lease_ttl.filter(|&ttl| {
        let whole = ttl >= MIN_LEASE_TTL && ttl.subsec_nanos() == 0;
        if !whole {
            errs.push(
                join(PATH, "lease_ttl"),
                format!(
                    "{ttl:?} is not a whole number of seconds of at least 2s (etcd's leases \
                     are whole seconds, and it grants none shorter)"
                ),
            );
        }
        whole
    });
    if let (Some(ttl), Some(grace)) = (lease_ttl, grace)
        && grace < ttl
    {
        errs.push(
            join(PATH, "grace"),
            format!(
                "{grace:?} is shorter than lease_ttl ({ttl:?}): a host would give up its \
                 weight before the fleet knows it is gone"
            ),
        );
    }
    if let Some(publish) = publish {
        match lease_ttl {
            Some(ttl) if publish < MIN_PUBLISH || publish * 2 > ttl => errs.push(
                join(PATH, "publish"),
                format!("{publish:?} must be from 100ms to half of lease_ttl ({ttl:?})"),
            ),
            None if publish < MIN_PUBLISH => errs.push(
                join(PATH, "publish"),
                format!("{publish:?} must be at least 100ms"),
            ),
            _ => {}
        }
    }
    if errs.len() > reported {
        return None;
    }
    Some(FleetConfig {
        etcd: etcd?,
        name: name?,
        host: host?,
        lease_ttl: lease_ttl?,
        grace: grace?,
        publish: publish?,
    })
}

fn endpoints(errs: &mut Collector, table: &Table) -> Option<Vec<String>> {
    let path = join(PATH, "etcd");
    let items = value::array(errs, table, PATH, "etcd").required(
        errs,
        &path,
        r#"etcd = ["http://198.18.200.1:2379"]"#,
    )?;
    if items.is_empty() {
        errs.push(
            &path,
            "needs at least one endpoint, e.g. \"http://198.18.200.1:2379\"",
        );
        return None;
    }
    let mut out = vec![];
    let mut ok = true;
    for (item_path, text) in value::strings(errs, items, &path) {
        match text.strip_prefix("http://") {
            Some(rest) if !rest.is_empty() && !rest.contains('/') => out.push(text.to_owned()),
            _ if text.starts_with("https://") => {
                ok = false;
                errs.push(
                    item_path,
                    format!(
                        "{text:?}: canaryd speaks plain http to etcd (no TLS client is built \
                         in); reach etcd on a private network or through a local TLS proxy"
                    ),
                );
            }
            _ => {
                ok = false;
                errs.push(
                    item_path,
                    format!("{text:?} is not an endpoint such as \"http://198.18.200.1:2379\""),
                );
            }
        }
    }
    (ok && out.len() == items.len()).then_some(out)
}

/// Whether `name` can be a fleet or host name: 1 to 63 of
/// `a-z A-Z 0-9 . _ -`, as it goes into etcd keys.
pub fn check_name(name: &str) -> Result<(), String> {
    let fine = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if fine {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a name of 1 to 63 letters, digits, '.', '_' or '-' (it is part \
             of etcd keys)"
        ))
    }
}

/// A name that goes into an etcd key: 1 to 63 of `a-z A-Z 0-9 . _ -`.
fn key_word(
    errs: &mut Collector,
    table: &Table,
    key: &str,
    default: Option<String>,
) -> Option<String> {
    let path = join(PATH, key);
    let text = match (value::string(errs, table, PATH, key), default) {
        (value::Field::Found(t), _) => t.to_owned(),
        (value::Field::Bad, _) => return None,
        (value::Field::Absent, Some(d)) => d,
        (value::Field::Absent, None) => {
            errs.push(
                &path,
                format!("required field is missing, e.g. {key} = \"iris\""),
            );
            return None;
        }
    };
    if let Err(why) = check_name(&text) {
        errs.push(path, why);
        return None;
    }
    Some(text)
}

fn duration(errs: &mut Collector, table: &Table, key: &str, default: &str) -> Option<Duration> {
    let text = value::string(errs, table, PATH, key).or(default)?;
    match parse_duration(text) {
        Ok(d) if !d.is_zero() => Some(d),
        Ok(_) => {
            errs.push(join(PATH, key), "must be longer than 0s");
            None
        }
        Err(e) => {
            errs.push(join(PATH, key), e.to_string());
            None
        }
    }
}
