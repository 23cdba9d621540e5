//! Where a fleet keeps its state in etcd: every key under
//! `/canary/v1/<fleet>/` (docs/FLEET.md, "Keys").
//!
//! - `leader`: the leading host's name, under its lease. The key's
//!   create revision is the leader's fencing token: every write of a
//!   decision checks it is unchanged.
//! - `weight/<service>` and `run/<service>`: the fleet's rollout of a
//!   service, written together by the leader's looks and by any host's
//!   operator commands, each a compare-and-swap on the run's revision.
//!   Hosts watch `weight/` only (`records::FleetWeight`: generation,
//!   weight, phase, step: small); `run/` has the whole record with the
//!   plan, the fleet's readings and the history (`records::FleetRollout`),
//!   for the leader and `rollout status`.
//! - `hosts/<host>`: what a live host publishes (`records::HostRecord`),
//!   under its lease: it goes when the host does.
//! - `members/<host>`: every host that ever joined, with no lease, so
//!   `canaryctl fleet status` can list the ones that are gone.

/// The key layout of one fleet.
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(fleet: &str) -> Keys {
        Keys {
            prefix: format!("/canary/v1/{fleet}/"),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn leader(&self) -> String {
        format!("{}leader", self.prefix)
    }

    pub fn weights(&self) -> String {
        format!("{}weight/", self.prefix)
    }

    pub fn weight(&self, service: &str) -> String {
        format!("{}{service}", self.weights())
    }

    pub fn runs(&self) -> String {
        format!("{}run/", self.prefix)
    }

    pub fn run(&self, service: &str) -> String {
        format!("{}{service}", self.runs())
    }

    pub fn hosts(&self) -> String {
        format!("{}hosts/", self.prefix)
    }

    pub fn host(&self, host: &str) -> String {
        format!("{}{host}", self.hosts())
    }

    pub fn members(&self) -> String {
        format!("{}members/", self.prefix)
    }

    pub fn member(&self, host: &str) -> String {
        format!("{}{host}", self.members())
    }

    /// The last part of a key under `under` (a service or host name).
    pub fn name_in<'k>(&self, under: &str, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(under).filter(|n| !n.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_under_the_fleets_prefix() {
        let k = Keys::new("iris");
        assert_eq!(k.leader(), "/canary/v1/iris/leader");
        assert_eq!(k.weight("model"), "/canary/v1/iris/weight/model");
        assert_eq!(k.run("model"), "/canary/v1/iris/run/model");
        assert_eq!(k.host("host-a"), "/canary/v1/iris/hosts/host-a");
        assert_eq!(k.member("host-a"), "/canary/v1/iris/members/host-a");
        let key = k.host("host-a");
        assert_eq!(k.name_in(&k.hosts(), &key), Some("host-a"));
        assert_eq!(k.name_in(&k.hosts(), &k.hosts()), None);
        // One fleet's prefix is not another's: "iris" vs "iris2".
        assert!(!Keys::new("iris2").leader().starts_with(k.prefix()));
    }
}
