//! `cargo xtask demo`: setup, then the canary-demo binary of the tests crate.

use std::process::Command;

use anyhow::Result;

use crate::{cmd, setup};

pub fn run(demo_args: &[String]) -> Result<()> {
    crate::require_root(
        "demo",
        "the demo loads BPF programs and creates network namespaces",
    )?;
    println!("==> [1/2] setup");
    setup::run()?;
    println!("==> [2/2] demo");
    cmd::run(
        Command::new("cargo")
            .args([
                "run",
                "--release",
                "-p",
                "tests",
                "--bin",
                "canary-demo",
                "--",
            ])
            .args(demo_args),
    )
}
