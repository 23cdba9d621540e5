//! The command lines of `canaryd` and `canaryctl`, in the library so that
//! `cargo xtask man` renders their man pages and `canaryctl completions`
//! its shell completions from the one definition the binaries parse; and
//! what the binaries print that is worth a unit test: status and reload as
//! text, and the JSON log line.

pub mod canaryctl;
pub mod canaryd;
pub mod log_format;
pub mod reload;
pub mod status;
