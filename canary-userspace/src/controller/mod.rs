//! The rollout controller: a pure policy (`policy::evaluate`) that turns a
//! plan (`plan`), the rollout's state and what both versions did into a
//! decision with its reasons, and the statistics it stands on (`stats`).

pub mod plan;
pub mod policy;
pub mod stats;

#[cfg(test)]
mod tests;
