//! The rollout controller: a pure policy (`policy::evaluate`) that turns a
//! plan (`plan`), the rollout's state and what both versions did into a
//! decision with its reasons and its effect on the data path (`effect`,
//! which also decides what an operator's command does), the statistics it
//! stands on (`stats`), and the bookkeeping of one running rollout (`run`).

pub mod effect;
pub mod ledger;
pub mod operate;
pub mod plan;
pub mod policy;
pub mod prometheus;
pub mod run;
pub mod stats;
pub mod webhook;

#[cfg(test)]
pub(crate) mod tests;
