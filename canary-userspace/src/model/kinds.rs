//! The words that name a kind of thing in the config file, the API and the
//! CLI: protocol, affinity, XDP attach mode, ingress hook, rollout mode, on_rollback. Each is one enum with its
//! spelling in one table, used by serde, `Display` and `FromStr` alike.

use std::{fmt, str::FromStr};

use canary_common::{AFFINITY_CLIENT, AFFINITY_FLOW, PROTO_TCP, PROTO_UDP};
use serde::{Deserialize, Serialize};

/// A word-named enum: its variants and their spellings.
pub trait Named: Copy + PartialEq + 'static {
    /// What the word names, for error messages ("protocol").
    const KIND: &'static str;
    const ALL: &'static [(Self, &'static str)];

    fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(v, _)| *v == self)
            .map(|(_, n)| *n)
            .unwrap_or("?")
    }

    /// The spellings, for "expected one of ..." messages.
    fn choices() -> String {
        Self::ALL
            .iter()
            .map(|(_, n)| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(" or ")
    }

    fn parse_name(s: &str) -> Result<Self, UnknownName> {
        Self::ALL
            .iter()
            .find(|(_, n)| *n == s)
            .map(|(v, _)| *v)
            .ok_or_else(|| UnknownName {
                kind: Self::KIND,
                found: s.to_owned(),
                expected: Self::choices(),
            })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {found:?}; expected {expected}")]
pub struct UnknownName {
    pub kind: &'static str,
    pub found: String,
    pub expected: String,
}

/// Display, FromStr and serde (as the word) for a `Named` enum.
macro_rules! named {
    ($t:ty) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
        impl FromStr for $t {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, UnknownName> {
                <$t>::parse_name(s)
            }
        }
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Named for Protocol {
    const KIND: &'static str = "protocol";
    const ALL: &'static [(Self, &'static str)] = &[(Protocol::Tcp, "tcp"), (Protocol::Udp, "udp")];
}
named!(Protocol);

impl Protocol {
    /// The IP protocol number the data path keys on.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => PROTO_TCP,
            Protocol::Udp => PROTO_UDP,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Affinity {
    /// Each connection (5-tuple) is decided on its own.
    Flow,
    /// Each client address is decided once: a user sees one version.
    Client,
}

impl Named for Affinity {
    const KIND: &'static str = "affinity";
    const ALL: &'static [(Self, &'static str)] =
        &[(Affinity::Flow, "flow"), (Affinity::Client, "client")];
}
named!(Affinity);

impl Affinity {
    /// The mode number the data path stores in `Service::affinity`.
    pub fn number(self) -> u8 {
        match self {
            Affinity::Flow => AFFINITY_FLOW,
            Affinity::Client => AFFINITY_CLIENT,
        }
    }
}

/// What the data path reads of a service's payload (`app_protocol`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AppProtocol {
    /// Per connection: the HTTP/2 preface makes it h2c (frames, streams,
    /// grpc-status); anything else is read as HTTP/1.x.
    #[default]
    Auto,
    /// HTTP/1.x status lines only.
    Http,
    /// HTTP/2 without TLS (gRPC): a connection without the preface is
    /// counted untracked.
    H2c,
    /// Nothing is read: requests and responses are counted by turns.
    None,
}

impl Named for AppProtocol {
    const KIND: &'static str = "app_protocol";
    const ALL: &'static [(Self, &'static str)] = &[
        (AppProtocol::Auto, "auto"),
        (AppProtocol::Http, "http"),
        (AppProtocol::H2c, "h2c"),
        (AppProtocol::None, "none"),
    ];
}
named!(AppProtocol);

impl AppProtocol {
    /// The number the data path stores in `Service::app_protocol`.
    pub fn number(self) -> u8 {
        use canary_common::h2;
        match self {
            AppProtocol::Auto => h2::APP_PROTOCOL_AUTO,
            AppProtocol::Http => h2::APP_PROTOCOL_HTTP,
            AppProtocol::H2c => h2::APP_PROTOCOL_H2C,
            AppProtocol::None => h2::APP_PROTOCOL_NONE,
        }
    }
}

/// How the XDP program ended up attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum XdpMode {
    /// In the driver: the fast path.
    Driver,
    /// Generic (skb) mode: works everywhere, costs an skb allocation.
    Generic,
}

impl Named for XdpMode {
    const KIND: &'static str = "XDP mode";
    const ALL: &'static [(Self, &'static str)] =
        &[(XdpMode::Driver, "driver"), (XdpMode::Generic, "generic")];
}
named!(XdpMode);

/// Where an interface's ingress program runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Hook {
    /// XDP, before the kernel makes an skb: the fast path on physical NICs
    /// whose driver runs XDP natively. The default.
    #[default]
    Xdp,
    /// TC ingress (tcx), on the skb: cheaper on virtual interfaces (veth),
    /// where native XDP copies every cloned skb it is given.
    Tc,
}

impl Named for Hook {
    const KIND: &'static str = "hook";
    const ALL: &'static [(Self, &'static str)] = &[(Hook::Xdp, "xdp"), (Hook::Tc, "tc")];
}
named!(Hook);

/// Whether a rollout's decisions change weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Step up, roll back, promote.
    Enforce,
    /// Evaluate, log and export every decision, and carry none out (no
    /// weight, no flow reset). An operator's commands still apply: see
    /// the controller's `effect`.
    DryRun,
}

impl Named for Mode {
    const KIND: &'static str = "rollout mode";
    const ALL: &'static [(Self, &'static str)] =
        &[(Mode::Enforce, "enforce"), (Mode::DryRun, "dry-run")];
}
named!(Mode);

/// What a rollback does to connections the canary already holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OnRollback {
    /// They keep their backend until they close.
    Drain,
    /// Their flow entries go: their next packet reaches stable, which
    /// resets them, and the clients reconnect to stable.
    Reset,
}

impl Named for OnRollback {
    const KIND: &'static str = "on_rollback";
    const ALL: &'static [(Self, &'static str)] =
        &[(OnRollback::Drain, "drain"), (OnRollback::Reset, "reset")];
}
named!(OnRollback);

/// What new flows do when canaryd's heartbeat goes stale.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Failsafe {
    /// New flows go to stable; established ones keep their version.
    Revert,
    /// Weights stay as canaryd left them.
    Hold,
}

impl Named for Failsafe {
    const KIND: &'static str = "failsafe";
    const ALL: &'static [(Self, &'static str)] =
        &[(Failsafe::Revert, "revert"), (Failsafe::Hold, "hold")];
}
named!(Failsafe);

impl Failsafe {
    /// The mode number the data path stores in `Settings::failsafe`.
    pub fn number(self) -> u32 {
        match self {
            Failsafe::Revert => canary_common::FAILSAFE_REVERT,
            Failsafe::Hold => canary_common::FAILSAFE_HOLD,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trips<T>()
    where
        T: Named + fmt::Display + FromStr + Serialize + fmt::Debug + for<'de> Deserialize<'de>,
        <T as FromStr>::Err: fmt::Debug,
    {
        for (v, n) in T::ALL {
            assert_eq!(v.to_string(), *n);
            assert_eq!(n.parse::<T>().unwrap(), *v);
            let json = serde_json::to_string(v).unwrap();
            assert_eq!(json, format!("\"{n}\""));
            assert_eq!(serde_json::from_str::<T>(&json).unwrap(), *v);
        }
        assert!("nonsense".parse::<T>().is_err());
    }

    #[test]
    fn every_word_round_trips_through_display_fromstr_and_serde() {
        round_trips::<Protocol>();
        round_trips::<Affinity>();
        round_trips::<AppProtocol>();
        round_trips::<XdpMode>();
        round_trips::<Hook>();
        round_trips::<Mode>();
        round_trips::<OnRollback>();
        round_trips::<Failsafe>();
    }

    #[test]
    fn an_unknown_word_says_what_was_expected() {
        let e = "sctp".parse::<Protocol>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown protocol \"sctp\"; expected \"tcp\" or \"udp\""
        );
    }
}
