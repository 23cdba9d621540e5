//! The `[daemon]` table: where to attach, listen, pin and log.

use std::{
    collections::{BTreeMap, HashSet},
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use canary_common::{DEFAULT_FLOW_TABLE_SIZE, DEFAULT_UDP_IDLE_TIMEOUT_NS};
use log::LevelFilter;

use crate::model::kinds::{Failsafe, Hook};
use toml::{Table, Value};

use super::{
    DEFAULT_BPFFS, DEFAULT_METRICS_LISTEN, DEFAULT_SOCKET, DEFAULT_STATE_DIR, DaemonConfig,
    address,
    duration::parse_duration,
    error::Collector,
    interface,
    value::{self, join},
};

const PATH: &str = "daemon";

const KNOWN: &[&str] = &[
    "interfaces",
    "socket",
    "metrics_listen",
    "bpffs",
    "state_dir",
    "log_level",
    "flow_table_size",
    "udp_idle_timeout",
    "signals",
    "latency_sampling",
    "failsafe",
    "failsafe_timeout",
];

/// Largest flow table: 2^24 entries. The LRU hash is preallocated at about
/// 168 bytes of kernel memory per entry (40-byte key, 64-byte value, the
/// hash's own element; `bpftool map show` reports memlock 11,010,944 B for
/// 65,536 entries), so this costs about 2.8 GB.
pub const MAX_FLOW_TABLE_SIZE: u32 = 16_777_216;

/// Reads `[daemon]`; `None` when anything in it was reported.
pub(crate) fn read(
    errs: &mut Collector,
    value: Option<&Value>,
    interface_exists: &dyn Fn(&str) -> bool,
) -> Option<DaemonConfig> {
    let table = match value {
        Some(Value::Table(table)) => table,
        Some(other) => {
            value::wrong_type(errs, PATH, "a table ([daemon])", other);
            return None;
        }
        None => {
            errs.push(
                PATH,
                r#"required table is missing; add [daemon] with interfaces = ["eth0"]"#,
            );
            return None;
        }
    };
    value::reject_unknown(errs, table.keys(), PATH, KNOWN);

    let interfaces = interfaces(errs, table, interface_exists);
    let (interfaces, hooks) = match interfaces {
        Some((names, hooks)) => (Some(names), Some(hooks)),
        None => (None, None),
    };
    let socket = absolute_path(errs, table, "socket", DEFAULT_SOCKET);
    let metrics_listen = metrics_listen(errs, table);
    let bpffs = absolute_path(errs, table, "bpffs", DEFAULT_BPFFS);
    let state_dir = absolute_path(errs, table, "state_dir", DEFAULT_STATE_DIR);
    let log_level = log_level(errs, table);
    let flow_table_size = flow_table_size(errs, table);
    let udp_idle_timeout = udp_idle_timeout(errs, table);
    let signals = value::boolean(errs, table, PATH, "signals").or(true);
    let latency_sampling = value::boolean(errs, table, PATH, "latency_sampling").or(true);
    let failsafe = value::word::<Failsafe>(errs, table, PATH, "failsafe");
    let failsafe_timeout = failsafe_timeout(errs, table);

    Some(DaemonConfig {
        interfaces: interfaces?,
        hooks: hooks?,
        socket: socket?,
        metrics_listen: metrics_listen?,
        bpffs: bpffs?,
        state_dir: state_dir?,
        log_level: log_level?,
        flow_table_size: flow_table_size?,
        udp_idle_timeout: udp_idle_timeout?,
        signals: signals?,
        latency_sampling: latency_sampling?,
        failsafe: failsafe?,
        failsafe_timeout: failsafe_timeout?,
    })
}

/// The interfaces' names, and the hooks of those not at the default (XDP).
type Interfaces = (Vec<String>, BTreeMap<String, Hook>);

fn interfaces(
    errs: &mut Collector,
    table: &Table,
    interface_exists: &dyn Fn(&str) -> bool,
) -> Option<Interfaces> {
    let path = join(PATH, "interfaces");
    let items = value::array(errs, table, PATH, "interfaces").required(
        errs,
        &path,
        r#"interfaces = ["eth0"]"#,
    )?;
    if items.is_empty() {
        errs.push(
            &path,
            "no interfaces; at least one is required to attach to",
        );
        return None;
    }
    let before = errs.len();
    let mut seen = HashSet::new();
    let mut names = Vec::with_capacity(items.len());
    let mut hooks = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        let Some((name, hook)) = interface::entry(errs, item, &item_path) else {
            continue;
        };
        if let Err(why) = crate::host::interfaces::check_name(name) {
            errs.push(item_path, why.to_string());
        } else if !seen.insert(name) {
            errs.push(item_path, format!("{name:?} is listed twice"));
        } else if !interface_exists(name) {
            errs.push(
                item_path,
                format!("no interface named {name:?} on this host"),
            );
        } else {
            names.push(name.to_owned());
            if hook != Hook::default() {
                hooks.insert(name.to_owned(), hook);
            }
        }
    }
    (errs.len() == before).then_some((names, hooks))
}

fn absolute_path(errs: &mut Collector, table: &Table, key: &str, default: &str) -> Option<PathBuf> {
    let text = value::string(errs, table, PATH, key).or(default)?;
    if !Path::new(text).is_absolute() {
        errs.push(
            join(PATH, key),
            format!("{text:?} is not an absolute path, e.g. {default:?}"),
        );
        return None;
    }
    Some(PathBuf::from(text))
}

fn metrics_listen(errs: &mut Collector, table: &Table) -> Option<SocketAddr> {
    let text = value::string(errs, table, PATH, "metrics_listen").or(DEFAULT_METRICS_LISTEN)?;
    let checked = address::parse(text).and_then(|addr| {
        // Port 0 would bind a random port that no scraper could find.
        if addr.port() == 0 {
            Err(format!(
                "{addr} has port 0; a port from 1 to 65535 is required"
            ))
        } else {
            Ok(addr)
        }
    });
    checked
        .map_err(|why| errs.push(join(PATH, "metrics_listen"), why))
        .ok()
}

fn log_level(errs: &mut Collector, table: &Table) -> Option<LevelFilter> {
    let text = value::string(errs, table, PATH, "log_level").or("info")?;
    let level = match text {
        "error" => LevelFilter::Error,
        "warn" => LevelFilter::Warn,
        "info" => LevelFilter::Info,
        "debug" => LevelFilter::Debug,
        "trace" => LevelFilter::Trace,
        other => {
            errs.push(
                join(PATH, "log_level"),
                format!(
                    "{other:?} is not a log level; expected one of: error, warn, info, debug, trace"
                ),
            );
            return None;
        }
    };
    Some(level)
}

fn flow_table_size(errs: &mut Collector, table: &Table) -> Option<u32> {
    let size =
        value::integer(errs, table, PATH, "flow_table_size").or(DEFAULT_FLOW_TABLE_SIZE.into())?;
    match u32::try_from(size) {
        Ok(size) if (1..=MAX_FLOW_TABLE_SIZE).contains(&size) => Some(size),
        _ => {
            errs.push(
                join(PATH, "flow_table_size"),
                format!("{size} is out of range; the flow table holds 1 to {MAX_FLOW_TABLE_SIZE} entries"),
            );
            None
        }
    }
}

/// Heartbeat age after which the failsafe acts: 1 s or more (a heartbeat
/// goes every third of it, at most every 5 s).
fn failsafe_timeout(errs: &mut Collector, table: &Table) -> Option<Duration> {
    let text = value::string(errs, table, PATH, "failsafe_timeout").or("30s")?;
    match parse_duration(text) {
        Ok(d) if d >= Duration::from_secs(1) => Some(d),
        Ok(_) => {
            errs.push(
                join(PATH, "failsafe_timeout"),
                format!("{text:?} is shorter than 1s: a busy canaryd would trip it"),
            );
            None
        }
        Err(e) => {
            errs.push(join(PATH, "failsafe_timeout"), e.to_string());
            None
        }
    }
}

fn udp_idle_timeout(errs: &mut Collector, table: &Table) -> Option<Duration> {
    let path = join(PATH, "udp_idle_timeout");
    let text = match value::string(errs, table, PATH, "udp_idle_timeout") {
        value::Field::Absent => return Some(Duration::from_nanos(DEFAULT_UDP_IDLE_TIMEOUT_NS)),
        value::Field::Bad => return None,
        value::Field::Found(text) => text,
    };
    // The data path keeps the timeout in u64 nanoseconds, and 0 there means
    // "use the built-in default", so neither end of the range is usable.
    let checked = parse_duration(text)
        .map_err(|e| e.to_string())
        .and_then(|timeout| {
            if timeout.is_zero() {
                Err(format!("{text:?} must be longer than 0, e.g. \"30s\""))
            } else if u64::try_from(timeout.as_nanos()).is_err() {
                Err(format!(
                    "{text:?} is too long; the limit is 2^64 nanoseconds (584 years)"
                ))
            } else {
                Ok(timeout)
            }
        });
    checked.map_err(|why| errs.push(path, why)).ok()
}
