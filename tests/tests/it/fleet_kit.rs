//! The fleet test kit on its own (`tests::fleet`), before any fleet code:
//! every host reaches etcd and serves its VIP through a plain canaryd, the
//! shared client address reaches every host, a partition cuts exactly one
//! host from etcd, etcd's faults do what they say, and nothing is left
//! behind.

use std::{
    io::ErrorKind,
    net::{IpAddr, SocketAddr, TcpStream},
    path::PathBuf,
    process::Command,
    time::Instant,
};

use canary_userspace::config::{self, Config};
use tests::{
    fleet::{ETCD_PORT, ETCD_REQUEST, FleetUnderTest, SHARED_CLIENT, etcd_v4},
    harness::{CANARY, STABLE},
    kit::{WAIT, text, wait_until},
};

/// Requests per host and weight: enough that a host splitting at all
/// (rather than sending everything one way) would show.
const REQUESTS: usize = 20;

/// `ip netns list`, names only.
fn listed_namespaces() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// A TCP connection from host i's namespace to etcd through its link.
fn connect_etcd(f: &FleetUnderTest, i: usize) -> std::io::Result<TcpStream> {
    let etcd = SocketAddr::new(etcd_v4(i).into(), ETCD_PORT);
    f.net.hosts[i]
        .enter(|| TcpStream::connect_timeout(&etcd, ETCD_REQUEST))
        .unwrap()
}

/// Host i's config on its own (no `[fleet]`: the fleet code is not in
/// this suite's way), at `weight_bp`.
fn single_host(f: &FleetUnderTest, i: usize, weight_bp: u16) -> Config {
    Config {
        fleet: None,
        ..f.config(i, weight_bp, None)
    }
}

/// `REQUESTS` new connections to host i from `source` (the client's
/// address on the link if None); each answer must come from `want`.
fn all_from(f: &FleetUnderTest, i: usize, source: Option<IpAddr>, want: &str) {
    for n in 0..REQUESTS {
        let got = match source {
            None => f.request(i),
            Some(s) => f.request_from(i, s),
        }
        .unwrap_or_else(|e| panic!("host {i} request {n} from {source:?}: {e:#}"));
        assert_eq!(got, want, "host {i} request {n} from {source:?}");
    }
}

#[test]
fn every_host_reaches_etcd_serves_its_vip_and_a_partition_cuts_only_its_host() {
    let _serial = tests::root_scenario();
    let started = Instant::now();
    let f = FleetUnderTest::new("fleetkit");
    let names = f.net.names();
    let dirs: Vec<PathBuf> = f
        .hosts
        .iter()
        .flat_map(|h| [h.dirs.root.clone(), h.dirs.bpffs.clone()])
        .chain([f.etcd.data_dir()])
        .collect();
    let etcd_pid = f.etcd.pid().unwrap();
    assert_eq!(names.len(), 2 + f.host_count());
    let listed = listed_namespaces();
    for name in &names {
        assert!(listed.contains(name), "{name} not in {listed:?}");
    }

    for i in 0..f.host_count() {
        let health = f.etcd_health(i).unwrap();
        assert!(health.contains(r#""health":"true""#), "host {i}: {health}");
    }

    // Every host's config renders with its [fleet] table and passes the
    // config's own checks (lease_ttl, grace and publish go together).
    for i in 0..f.host_count() {
        let want = f.config(i, 0, None);
        let parsed = config::parse(&want.to_toml(), "fleet kit", &|_| true)
            .unwrap_or_else(|e| panic!("host {i}: {e}\n{}", want.to_toml()));
        assert_eq!(parsed, want, "host {i}");
        let fleet = parsed.fleet.unwrap();
        assert_eq!(fleet.etcd, [format!("http://198.18.{}.1:2379", 200 + i)]);
        assert_eq!(fleet.host, format!("host-{i}"));
    }

    let daemons: Vec<_> = (0..f.host_count())
        .map(|i| {
            f.write_config(i, &single_host(&f, i, 0));
            f.start(i, &[])
        })
        .collect();
    for i in 0..f.host_count() {
        all_from(&f, i, None, STABLE);
        all_from(&f, i, Some(SHARED_CLIENT.into()), STABLE);
    }
    for (i, d) in daemons.iter().enumerate() {
        let out = f.ctl(i, &["set-weight", "model", "100"]);
        assert!(out.status.success(), "host {i}: {}", text(&out.stderr));
        assert_eq!(
            f.client(i).status().unwrap().services[0].weight,
            tests::bp(10000),
            "host {i}:\n{}",
            d.log_text()
        );
    }
    for i in 0..f.host_count() {
        all_from(&f, i, None, CANARY);
        all_from(&f, i, Some(SHARED_CLIENT.into()), CANARY);
    }
    // A canaryd without [fleet] says so to a fleet command.
    let out = f.ctl(0, &["fleet", "status"]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(
        text(&out.stderr).contains("no [fleet] in its config"),
        "{}",
        text(&out.stderr)
    );
    for i in 0..f.host_count() {
        let metrics = f.metrics(i).unwrap();
        assert!(metrics.contains("canary_"), "host {i}: {metrics}");
    }

    // A partition cuts one host: its connections to etcd fail, the other
    // hosts still get answers; heal gives it back.
    for i in 0..f.host_count() {
        f.partition(i);
        let cut = connect_etcd(&f, i).map(drop);
        let kind = cut.as_ref().map_err(|e| e.kind());
        assert!(
            matches!(
                kind,
                Err(ErrorKind::NetworkUnreachable
                    | ErrorKind::HostUnreachable
                    | ErrorKind::TimedOut)
            ),
            "host {i} partitioned, connecting to etcd: {cut:?}"
        );
        assert!(f.etcd_health(i).is_err(), "host {i} partitioned");
        for other in (0..f.host_count()).filter(|&o| o != i) {
            f.etcd_health(other)
                .unwrap_or_else(|e| panic!("host {other} while host {i} is cut: {e:#}"));
        }
        f.heal(i);
        let took = wait_until(
            WAIT,
            &format!("etcd healthy from host {i} after heal"),
            || f.etcd.log_text(),
            || f.etcd_health(i).is_ok(),
        );
        println!("host {i}: partitioned ({kind:?}), healed in {took:?}");
    }

    drop(daemons);
    drop(f);
    let listed = listed_namespaces();
    for name in &names {
        assert!(!listed.contains(name), "{name} still there after drop");
    }
    for dir in &dirs {
        assert!(!dir.exists(), "{} still there after drop", dir.display());
    }
    assert!(
        !PathBuf::from(format!("/proc/{etcd_pid}")).exists(),
        "etcd {etcd_pid} still running after drop"
    );
    println!("fleet kit smoke test: {:?}", started.elapsed());
}

#[test]
fn etcd_stops_continues_and_restarts_on_its_own_data() {
    let _serial = tests::root_scenario();
    let f = FleetUnderTest::builder("fleetkit-etcd").hosts(1).build();
    let written = f.etcd.put("/kit/marker", "1").unwrap();
    assert_eq!(f.etcd.count("/kit/").unwrap(), (1, written));

    f.etcd.stop();
    // A stopped etcd still completes connections (the kernel does), and
    // answers nothing.
    let silent = Instant::now();
    let err = f.etcd_health(0).unwrap_err();
    assert!(silent.elapsed() >= ETCD_REQUEST, "{err:#}");
    connect_etcd(&f, 0).unwrap();
    f.etcd.cont();
    wait_until(
        WAIT,
        "etcd answers after SIGCONT",
        || f.etcd.log_text(),
        || f.etcd_health(0).is_ok(),
    );

    let mut f = f;
    f.etcd.kill();
    assert_eq!(f.etcd.pid(), None);
    let refused = connect_etcd(&f, 0).map(drop);
    assert_eq!(
        refused.as_ref().map_err(|e| e.kind()),
        Err(ErrorKind::ConnectionRefused),
        "{refused:?}"
    );

    let restarted = Instant::now();
    f.etcd.restart();
    f.wait_for_etcd();
    println!("etcd restarted in {:?}", restarted.elapsed());
    // The same data: the key and its revision survived the kill.
    let (count, revision) = f.etcd.count("/kit/").unwrap();
    assert_eq!(count, 1, "{}", f.etcd.log_text());
    assert!(revision >= written, "revision {revision} < {written}");
}
