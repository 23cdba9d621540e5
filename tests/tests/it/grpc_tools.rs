//! The gRPC test tools (`tests::grpc`) against each other, without canaryd:
//! a server in one namespace, the load client in another, one veth pair
//! between them. What the HTTP/2 end-to-end tests will lean on: counts
//! that agree exactly on both sides, faults changed while the server runs,
//! channels that are connections of their own, a connection age that makes
//! the client reconnect.

use std::{net::SocketAddr, time::Duration};

use tests::grpc::{Code, GrpcLoad, GrpcServer, ServerOptions};
use xtask::topology::{
    CLIENT_V4, CLIENT_V6, HOST_V4, HOST_V6, Netns, V4_PREFIX_LEN, V6_PREFIX_LEN, veth,
};

const PORT: u16 = 50051;
const IF: &str = "eth0";

/// Two namespaces and a veth pair: the client on the standard layout's
/// client addresses, the server on the host's.
struct Pair {
    client: Netns,
    server: Netns,
}

impl Pair {
    fn new() -> Pair {
        let client = Netns::new("grpc-client").unwrap();
        let server = Netns::new("grpc-server").unwrap();
        veth(&client, IF, &server, IF).unwrap();
        for (ns, v4, v6) in [(&client, CLIENT_V4, CLIENT_V6), (&server, HOST_V4, HOST_V6)] {
            ns.ip_batch(&format!(
                "address add {v4}/{V4_PREFIX_LEN} dev {IF}\n\
                 address add {v6}/{V6_PREFIX_LEN} dev {IF} nodad\n"
            ))
            .unwrap();
        }
        Pair { client, server }
    }
}

fn v4_server() -> SocketAddr {
    SocketAddr::new(HOST_V4.into(), PORT)
}

#[test]
fn every_tenth_call_fails_exactly_and_both_sides_count_it() {
    let _serial = tests::root_scenario();
    let net = Pair::new();
    let options = ServerOptions {
        fail_every: 10,
        delay: Duration::from_millis(1),
        ..Default::default()
    };
    let server = GrpcServer::start(&net.server, v4_server(), "stable", &options).unwrap();

    let load = GrpcLoad {
        channels: 4,
        concurrency: 8,
        ..GrpcLoad::calls(200)
    };
    let outcome = load.run(&net.client, v4_server()).unwrap();
    println!("client: {outcome:?}");
    assert_eq!((outcome.calls, outcome.not_sent), (200, 0));
    assert_eq!(outcome.channels_ready, 4);
    assert_eq!(outcome.count(Code::Ok), 180);
    assert_eq!(outcome.count(Code::Unavailable), 20);
    assert_eq!(outcome.by_code.len(), 2, "{:?}", outcome.by_code);
    // Failures name their server too (the x-server trailer), so per-version
    // counts are exact for errors as well.
    assert_eq!(outcome.by_server.len(), 1, "{:?}", outcome.by_server);
    assert_eq!(outcome.count_from("stable", Code::Ok), 180);
    assert_eq!(outcome.count_from("stable", Code::Unavailable), 20);
    for (i, channel) in outcome.by_channel.iter().enumerate() {
        assert_eq!(channel.calls, 50, "channel {i}");
    }

    let stats = server.stop().unwrap();
    println!("server: {stats:?}");
    assert_eq!(
        (stats.calls, stats.answered_ok, stats.answered_unavailable),
        (200, 180, 20)
    );
    assert_eq!(stats.connections, 4, "one TCP connection per channel");
}

#[test]
fn delay_and_failures_changed_at_run_time_show_in_the_next_calls() {
    let _serial = tests::root_scenario();
    let net = Pair::new();
    let options = ServerOptions {
        delay: Duration::from_millis(1),
        ..Default::default()
    };
    let server = GrpcServer::start(&net.server, v4_server(), "canary", &options).unwrap();
    let load = GrpcLoad {
        channels: 2,
        concurrency: 4,
        ..GrpcLoad::calls(100)
    };
    let p50 =
        |outcome: &tests::grpc::GrpcOutcome| outcome.by_server["canary"].latency_ms.unwrap().p50;

    let fast = load.run(&net.client, v4_server()).unwrap();
    assert_eq!(fast.count(Code::Ok), 100, "{fast:?}");

    let now = server.set_delay(Duration::from_millis(50)).unwrap();
    assert_eq!(now.delay_ms, 50.0);
    let slow = load.run(&net.client, v4_server()).unwrap();
    assert_eq!(slow.count(Code::Ok), 100, "{slow:?}");
    println!(
        "p50: {:.1} ms at 1 ms, {:.1} ms at 50 ms",
        p50(&fast),
        p50(&slow)
    );
    // The sleep is a floor; the ceilings leave room for a loaded 2-core
    // machine while still telling 1 ms from 50 ms.
    assert!(p50(&fast) < 25.0, "{fast:?}");
    assert!((50.0..150.0).contains(&p50(&slow)), "{slow:?}");

    // Counted from the change on: calls 5, 10, .., 100 of the next run.
    server.set_fail_every(5).unwrap();
    let failing = load.run(&net.client, v4_server()).unwrap();
    assert_eq!(
        failing.count_from("canary", Code::Unavailable),
        20,
        "{failing:?}"
    );
    assert_eq!(failing.count_from("canary", Code::Ok), 80, "{failing:?}");

    let stats = server.stats().unwrap();
    assert_eq!(
        (stats.calls, stats.answered_ok, stats.answered_unavailable),
        (300, 280, 20)
    );
    assert_eq!(stats.fail_every, 5);
}

#[test]
fn a_connection_age_makes_the_client_reconnect_without_failed_calls_over_ipv6() {
    let _serial = tests::root_scenario();
    let net = Pair::new();
    let addr = SocketAddr::new(HOST_V6.into(), PORT);
    let options = ServerOptions {
        delay: Duration::from_millis(20),
        max_connection_age: Some(Duration::from_millis(500)),
        ..Default::default()
    };
    let server = GrpcServer::start(&net.server, addr, "stable", &options).unwrap();
    // One channel, one call at a time, about 1.5 s: three connection ages.
    let outcome = GrpcLoad::calls(60).run(&net.client, addr).unwrap();
    let stats = server.stop().unwrap();
    println!("client: {outcome:?}\nserver: {stats:?}");
    assert_eq!(outcome.count_from("stable", Code::Ok), 60, "{outcome:?}");
    assert_eq!(stats.calls, 60);
    assert!(
        stats.connections >= 2,
        "the server closed no connection after 500 ms: {stats:?}"
    );
}

#[test]
fn a_server_that_cannot_listen_fails_to_start_and_says_why() {
    let _serial = tests::root_scenario();
    let net = Pair::new();
    // The server's address, but in the client's namespace, where it is not.
    let err = GrpcServer::start(
        &net.client,
        v4_server(),
        "stable",
        &ServerOptions::default(),
    )
    .err()
    .expect("a server started on an address its namespace lacks");
    let message = format!("{err:#}");
    println!("{message}");
    assert!(
        message.contains("cannot listen on 198.18.0.1:50051"),
        "{message}"
    );
}
