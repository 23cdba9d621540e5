//! Every integration suite in one test binary (as aya's): the tests crate
//! and its dependencies are linked once, not once per suite. A suite is a
//! module; pick one with its path as the filter:
//! `cargo test -p tests --test it daemon::` (or `daemon::kill` for one
//! test). No module name ends another (a `safety` beside `operator_safety`
//! would be picked by both filters: that suite is `mistakes`). Tests that
//! need root begin with `tests::root_scenario()`, which takes the lock of
//! `tests::one_at_a_time()`: suites share the process, and their
//! scenarios still run one after another.

mod attachment;
mod cli;
mod daemon;
mod daemon_host;
mod dashboards;
mod demo;
mod e2e;
mod fleet;
mod fleet_kit;
mod golden;
mod grpc;
mod grpc_tools;
mod h2_frames;
mod hostile;
mod mistakes;
mod operator_safety;
mod package;
mod publish;
mod python_client;
mod rollout;
mod rollout_power;
mod signals;
mod tc_hook;
mod upgrade;
