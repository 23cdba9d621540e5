//! `cargo xtask demo`: a canary rollout of a model server, end to end, in
//! throwaway namespaces (see `run`), or the plain split (`split`).
//!
//! - `model`: the classifiers (linfa-trees on iris), trained at start.
//! - `model_server`: a version's HTTP server, with the canary's fault.
//! - `labeller`: labelled load from many client addresses, and the
//!   per-version accuracy it exports for the PromQL gate.
//! - `grpc_serving`, `grpc_labeller` (`--scenario grpc`): the same models
//!   served over gRPC by `tests/grpc/server.py --model`, and labelled
//!   calls from `tests/grpc/labeller.py`.
//! - `scenario`: what is wrong with the canary; the rollout plan.
//! - `timeline`, `chart`: what happened over time, as an SVG.
//! - `fleet_run` (`--fleet N`): the same rollout on N hosts in one fleet,
//!   its leader killed half way (`fleet_follow`), with `fleet_timeline`
//!   and `fleet_chart` for each host's weight and the fleet's evidence,
//!   and `fleet_outcome` for the summary.

pub mod chart;
pub mod fleet_chart;
pub mod fleet_follow;
pub mod fleet_outcome;
pub mod fleet_run;
pub mod fleet_timeline;
pub mod grpc_labeller;
pub mod grpc_serving;
pub mod labeller;
pub mod model;
pub mod model_server;
pub mod run;
pub mod scenario;
pub mod split;
pub mod timeline;
