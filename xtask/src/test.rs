//! `cargo xtask test`: setup, then build, then the whole test suite.

use std::{process::Command, time::Instant};

use anyhow::Result;

use crate::{cmd, setup};

/// canary-ebpf only builds for bpfel-unknown-none; aya-build compiles it from
/// canary-userspace's build.rs, so the workspace-wide commands leave it out.
const WORKSPACE: &[&str] = &["--workspace", "--exclude", "canary-ebpf"];

/// Clippy on the eBPF crate as it is built: nightly, the bpfel target, core
/// built from source. Its own target directory: the build-std artifacts
/// would otherwise be thrown away by the host builds' flags and rebuilt.
fn ebpf_clippy() -> Command {
    let mut c = Command::new("cargo");
    c.args(["+nightly", "clippy", "-p", "canary-ebpf"])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
        .args(["--bins", "--lib", "--", "-D", "warnings"])
        .env(
            "CARGO_TARGET_DIR",
            crate::paths::target_dir().join("ebpf-lint"),
        );
    c
}

pub fn run(cargo_test_args: &[String]) -> Result<()> {
    crate::require_root(
        "test",
        "the tests load BPF programs and create network namespaces",
    )?;
    let start = Instant::now();
    let result = phases(cargo_test_args);
    let elapsed = start.elapsed().as_secs_f64();
    match &result {
        Ok(()) => println!("xtask test: passed in {elapsed:.1}s"),
        Err(_) => println!("xtask test: FAILED after {elapsed:.1}s"),
    }
    result
}

fn phases(cargo_test_args: &[String]) -> Result<()> {
    println!("==> [1/4] setup");
    setup::run()?;

    println!("==> [2/4] build");
    cmd::run(
        Command::new("cargo")
            .args(["build", "--all-targets"])
            .args(WORKSPACE),
    )?;

    // Before the tests, so a red lint is seen in the first minutes.
    println!("==> [3/4] lint");
    let lint = Instant::now();
    cmd::run(Command::new("cargo").args(["fmt", "--all", "--check"]))?;
    cmd::run(
        Command::new("cargo")
            .args(["clippy", "--all-targets"])
            .args(WORKSPACE)
            .args(["--", "-D", "warnings"]),
    )?;
    cmd::run(&mut ebpf_clippy())?;
    println!("lint: {:.1}s", lint.elapsed().as_secs_f64());

    println!("==> [4/4] test");
    // `-p` picks packages; cargo would let --workspace override it.
    let picks_packages = cargo_test_args
        .iter()
        .take_while(|a| *a != "--")
        .any(|a| a.starts_with("-p") || a.starts_with("--package"));
    let mut test = Command::new("cargo");
    test.arg("test");
    if !picks_packages {
        test.args(WORKSPACE);
    }
    cmd::run(test.args(cargo_test_args))
}
