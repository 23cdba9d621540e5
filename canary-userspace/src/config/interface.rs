//! Network interfaces: an entry of `daemon.interfaces` (a name, or a name
//! with the hook its ingress runs at). A name's syntax and its existence on
//! this host are `host::interfaces`'.

use toml::Value;

use super::{
    error::Collector,
    value::{self, join},
};
use crate::model::kinds::Hook;

/// Keys of an interface written as a table.
const KNOWN: &[&str] = &["name", "hook"];

/// One entry of `daemon.interfaces`: a name (`"eth0"`, ingress at XDP) or a
/// table with a name and the hook (`{ name = "veth0", hook = "tc" }`).
/// Problems are reported under `path`; None when there was one.
pub(crate) fn entry<'v>(
    errs: &mut Collector,
    item: &'v Value,
    path: &str,
) -> Option<(&'v str, Hook)> {
    match item {
        Value::String(name) => Some((name, Hook::default())),
        Value::Table(t) => {
            value::reject_unknown(errs, t.keys(), path, KNOWN);
            let name = value::string(errs, t, path, "name").required(
                errs,
                &join(path, "name"),
                r#"{ name = "veth0", hook = "tc" }"#,
            );
            let hook = value::word::<Hook>(errs, t, path, "hook");
            Some((name?, hook?))
        }
        other => {
            value::wrong_type(
                errs,
                path,
                r#"an interface name, or a table like { name = "veth0", hook = "tc" }"#,
                other,
            );
            None
        }
    }
}
