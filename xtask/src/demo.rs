//! `cargo xtask demo`: setup, the release canaryd and canaryctl, then the
//! canary-demo binary of the tests crate (a rollout, end to end).

use std::process::Command;

use anyhow::Result;

use crate::{cmd, setup};

pub fn run(demo_args: &[String]) -> Result<()> {
    crate::require_root(
        "demo",
        "the demo loads BPF programs and creates network namespaces",
    )?;
    println!("==> [1/3] setup");
    setup::run()?;
    // canary-demo runs the canaryd and canaryctl next to it, as an operator
    // would run the installed ones; built on their own, so that no test
    // feature of the tests crate reaches them.
    println!("==> [2/3] build canaryd and canaryctl (release)");
    cmd::run(Command::new("cargo").args([
        "build",
        "--release",
        "-p",
        "canary-userspace",
        "--bins",
    ]))?;
    println!("==> [3/3] demo");
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
