//! The fleet's store: etcd v3 through the `etcd-client` crate, every call
//! bounded by `OP_TIMEOUT` so a store that is gone is an error soon, not
//! a wait. What is kept where is `keys`; what the values are, `records`.

use std::{collections::BTreeMap, time::Duration};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp, WatchOptions,
    WatchStream,
};
use serde::{Serialize, de::DeserializeOwned};

use super::{
    keys::Keys,
    records::{FleetRollout, FleetWeight, HostRecord, Member},
};
use crate::config::FleetConfig;

/// Longest one request to etcd may take.
pub const OP_TIMEOUT: Duration = Duration::from_secs(2);

/// Records read per request of a range: a page of host records stays far
/// below the client's 4 MiB message limit (a host's record is about 1.3 KB
/// per service), whatever the fleet's size.
const PAGE: i64 = 500;

/// Why a store operation failed, for the log and the operator.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("etcd did not answer within {0:?}")]
    Timeout(Duration),
    #[error("{key}: not canary's record ({error})")]
    Record { key: String, error: String },
}

/// A record as read, with the revision it was last written at: a write
/// that must not overwrite a newer one compares it.
#[derive(Clone, Debug)]
pub struct Versioned<T> {
    pub value: T,
    pub mod_revision: i64,
}

/// One canaryd's handle on its fleet's keys (cheap to clone).
#[derive(Clone)]
pub struct Store {
    client: Client,
    pub keys: Keys,
}

impl Store {
    /// A client of `fleet.etcd`. Connections are made when first used, so
    /// this succeeds with etcd down: canaryd starts and serves its last
    /// weights, and joins when etcd answers.
    pub async fn connect(fleet: &FleetConfig) -> Result<Store, StoreError> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(1))
            // A link that went silent is found within 2 s, not at the
            // kernel's TCP timeout.
            .with_keep_alive(Duration::from_secs(1), Duration::from_secs(1))
            .with_keep_alive_while_idle(true);
        let client = timed(Client::connect(&fleet.etcd, Some(options))).await?;
        Ok(Store {
            client,
            keys: Keys::new(&fleet.name),
        })
    }

    /// A new lease of `ttl`; keys put under it go when it expires.
    pub async fn grant(&self, ttl: Duration) -> Result<i64, StoreError> {
        let mut c = self.client.clone();
        Ok(timed(c.lease_grant(ttl.as_secs() as i64, None)).await?.id())
    }

    /// Renews `lease` once; false when etcd says it has expired.
    pub async fn renew(&self, lease: i64) -> Result<bool, StoreError> {
        let mut c = self.client.clone();
        // One round trip: the client sends the first keep-alive itself and
        // waits for etcd's answer (a TTL of 0 is its error).
        match timed(c.lease_keep_alive(lease)).await {
            Ok(_) => Ok(true),
            Err(e) if e.lease_lost() => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub async fn put_host(&self, lease: i64, record: &HostRecord) -> Result<(), StoreError> {
        let key = self.keys.host(&record.host);
        let mut c = self.client.clone();
        let options = PutOptions::new().with_lease(lease);
        timed(c.put(key, json(record), Some(options))).await?;
        Ok(())
    }

    /// Records `member` unless the host joined before.
    pub async fn join(&self, member: &Member) -> Result<(), StoreError> {
        let key = self.keys.member(&member.host);
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, json(member), None)]);
        let mut c = self.client.clone();
        timed(c.txn(txn)).await?;
        Ok(())
    }

    /// Every fleet rollout, and the revision they were read at.
    pub async fn rollouts(
        &self,
    ) -> Result<(i64, BTreeMap<String, Versioned<FleetRollout>>), StoreError> {
        self.range::<FleetRollout>(&self.keys.runs(), 0).await
    }

    /// What every host applies, read at one revision, and that revision (a
    /// watch from the next one misses nothing).
    pub async fn weights(&self) -> Result<(i64, BTreeMap<String, FleetWeight>), StoreError> {
        let (revision, found) = self.range::<FleetWeight>(&self.keys.weights(), 0).await?;
        Ok((
            revision,
            found.into_iter().map(|(s, v)| (s, v.value)).collect(),
        ))
    }

    /// `service`'s fleet rollout, with the revision a write compares.
    pub async fn rollout(
        &self,
        service: &str,
    ) -> Result<Option<Versioned<FleetRollout>>, StoreError> {
        let key = self.keys.run(service);
        let mut c = self.client.clone();
        let answer = timed(c.get(key.clone(), None)).await?;
        answer
            .kvs()
            .first()
            .map(|kv| {
                Ok(Versioned {
                    value: parse(&key, kv.value())?,
                    mod_revision: kv.mod_revision(),
                })
            })
            .transpose()
    }

    /// The live hosts' records, by host name.
    pub async fn hosts(&self) -> Result<BTreeMap<String, HostRecord>, StoreError> {
        let (_, found) = self.range::<HostRecord>(&self.keys.hosts(), 0).await?;
        Ok(found.into_iter().map(|(h, v)| (h, v.value)).collect())
    }

    /// Every host that ever joined, by host name.
    pub async fn members(&self) -> Result<BTreeMap<String, Member>, StoreError> {
        let (_, found) = self.range::<Member>(&self.keys.members(), 0).await?;
        Ok(found.into_iter().map(|(h, v)| (h, v.value)).collect())
    }

    /// The leading host and its fencing token (the leader key's create
    /// revision), if any host leads.
    pub async fn leader(&self) -> Result<Option<(String, i64)>, StoreError> {
        let mut c = self.client.clone();
        let answer = timed(c.get(self.keys.leader(), None)).await?;
        Ok(answer.kvs().first().map(|kv| {
            (
                String::from_utf8_lossy(kv.value()).into_owned(),
                kv.create_revision(),
            )
        }))
    }

    /// Takes the lead if no host has it: the leader key, under `lease`,
    /// created only if absent. The fencing token when this host leads now.
    pub async fn campaign(&self, host: &str, lease: i64) -> Result<Option<i64>, StoreError> {
        let key = self.keys.leader();
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key,
                host.as_bytes().to_vec(),
                Some(PutOptions::new().with_lease(lease)),
            )]);
        let mut c = self.client.clone();
        let answer = timed(c.txn(txn)).await?;
        Ok(answer
            .succeeded()
            .then(|| answer.header().map_or(0, |h| h.revision())))
    }

    /// Writes `service`'s rollout (both its keys, in one transaction) if
    /// its run is still the one read at `read_at` (0: there was none) and,
    /// with `fence`, if the writer still leads with that token. Whether it
    /// was written.
    pub async fn write_rollout(
        &self,
        service: &str,
        record: &FleetRollout,
        read_at: i64,
        fence: Option<i64>,
    ) -> Result<bool, StoreError> {
        let run_key = self.keys.run(service);
        let mut when = vec![Compare::mod_revision(
            run_key.clone(),
            CompareOp::Equal,
            read_at,
        )];
        if let Some(token) = fence {
            when.push(Compare::create_revision(
                self.keys.leader(),
                CompareOp::Equal,
                token,
            ));
        }
        let txn = Txn::new().when(when).and_then([
            TxnOp::put(run_key, json(record), None),
            TxnOp::put(
                self.keys.weight(service),
                json(&record.weight_record()),
                None,
            ),
        ]);
        let mut c = self.client.clone();
        Ok(timed(c.txn(txn)).await?.succeeded())
    }

    /// Watches the whole records (`run/`) from `revision` on: for tools
    /// that follow a fleet's decisions (the simulation); hosts watch
    /// `weight/` only.
    pub async fn watch_runs(&self, revision: i64) -> Result<WatchStream, StoreError> {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision);
        let mut c = self.client.clone();
        timed(c.watch(self.keys.runs(), Some(options))).await
    }

    /// Watches what every host applies (`weight/`) from `revision` on.
    pub async fn watch_weights(&self, revision: i64) -> Result<WatchStream, StoreError> {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision);
        let mut c = self.client.clone();
        timed(c.watch(self.keys.weights(), Some(options))).await
    }

    /// Records under `under`, by the last part of their key, read a page
    /// at a time at one revision (`at`, or the newest when 0); that
    /// revision. A value that is not canary's is an error, not skipped.
    async fn range<T: DeserializeOwned>(
        &self,
        under: &str,
        at: i64,
    ) -> Result<(i64, BTreeMap<String, Versioned<T>>), StoreError> {
        let end = prefix_end(under);
        let mut from = under.as_bytes().to_vec();
        let mut revision = at;
        let mut out = BTreeMap::new();
        loop {
            let options = GetOptions::new()
                .with_range(end.clone())
                .with_limit(PAGE)
                .with_revision(revision);
            let mut c = self.client.clone();
            let answer = timed(c.get(from.clone(), Some(options))).await?;
            if revision == 0 {
                revision = answer.header().map_or(0, |h| h.revision());
            }
            for kv in answer.kvs() {
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                let Some(name) = self.keys.name_in(under, &key) else {
                    continue;
                };
                out.insert(
                    name.to_owned(),
                    Versioned {
                        value: parse(&key, kv.value())?,
                        mod_revision: kv.mod_revision(),
                    },
                );
            }
            match answer.kvs().last() {
                Some(last) if answer.more() => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => return Ok((revision, out)),
            }
        }
    }
}

/// The first key after every key starting with `prefix`.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl StoreError {
    /// etcd's answer for a lease it no longer has (it expired while this
    /// host was silent, or etcd lost it): `ErrGRPCLeaseNotFound` on a put,
    /// told by its message, which etcd keeps stable across releases; a TTL
    /// of 0 on a keep-alive.
    pub fn lease_lost(&self) -> bool {
        match self {
            StoreError::Etcd(etcd_client::Error::GRpcStatus(s)) => {
                s.message().contains("requested lease not found")
            }
            // etcd-client's own word for a keep-alive answered with TTL 0.
            StoreError::Etcd(etcd_client::Error::LeaseKeepAliveError(m)) => {
                m.contains("lease not found")
            }
            _ => false,
        }
    }
}

/// A value as etcd keeps it: JSON.
pub fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("canary's records always serialize")
}

pub fn parse<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Record {
        key: key.to_owned(),
        error: e.to_string(),
    })
}

async fn timed<T>(
    call: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(OP_TIMEOUT, call).await {
        Ok(done) => Ok(done?),
        Err(_) => Err(StoreError::Timeout(OP_TIMEOUT)),
    }
}
