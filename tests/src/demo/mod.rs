//! `cargo xtask demo`: a canary rollout of a model server, end to end, in
//! throwaway namespaces (see `run`), or the plain split (`split`).
//!
//! - `model`: the classifiers (linfa-trees on iris), trained at start.
//! - `model_server`: a version's HTTP server, with the canary's fault.
//! - `labeller`: labelled load from many client addresses, and the
//!   per-version accuracy it exports for the PromQL gate.
//! - `scenario`: what is wrong with the canary; the rollout plan.
//! - `timeline`, `chart`: what happened over time, as an SVG.

pub mod chart;
pub mod labeller;
pub mod model;
pub mod model_server;
pub mod run;
pub mod scenario;
pub mod split;
pub mod timeline;
