//! `cargo xtask setup`: install what a fresh Debian machine lacks to build
//! and test canary, skipping whatever is already there.

use std::{
    env,
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::cmd;

/// Debian packages the build and the tests need.
const DEBIAN_PACKAGES: &[&str] = &[
    // bpf-linker is built from source against the system LLVM 22 (its
    // `llvm-22` feature); LLVM's libraries link against zstd and zlib.
    "llvm-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    // End-to-end tests: `ip netns` / veth topologies, reachability checks.
    "iproute2",
    "iputils-ping",
    // End-to-end tests: nft rules inside test namespaces to break a backend
    // on purpose (drops, resets).
    "nftables",
    // Packet fixtures are written and replayed as scapy lines.
    "python3-scapy",
    // Rollout gates query a real Prometheus server (PromQL), and the metrics
    // output is checked with its `promtool check metrics`.
    "prometheus",
];

/// bpf-linker links the eBPF crate. Pinned: a newer release may drop the
/// `llvm-22` feature.
const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
const BPFFS: &str = "/sys/fs/bpf";

pub fn run() -> Result<()> {
    crate::require_root(
        "setup",
        "it installs Debian packages and bpf-linker and mounts bpffs",
    )?;
    rust_src()?;
    debian_packages()?;
    bpf_linker()?;
    bpffs()
}

/// aya-build compiles the eBPF crate with nightly and `-Z build-std=core`.
fn rust_src() -> Result<()> {
    let installed = cmd::probe(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))?
    .context("cannot list nightly's components: is rustup installed, with a nightly toolchain (`rustup toolchain install nightly`)?")?;
    if installed.lines().any(|l| l.trim() == "rust-src") {
        println!("setup: rust-src for nightly ... present");
        return Ok(());
    }
    println!("setup: rust-src for nightly ... installing");
    cmd::run(Command::new("rustup").args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        "nightly",
    ]))
}

fn debian_packages() -> Result<()> {
    let mut missing = Vec::new();
    for &package in DEBIAN_PACKAGES {
        let status = cmd::probe(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))?;
        let present = status.is_some_and(|s| s.trim() == "install ok installed");
        println!(
            "setup: Debian package {package} ... {}",
            if present { "present" } else { "missing" }
        );
        if !present {
            missing.push(package);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    println!(
        "setup: Debian packages {} ... installing",
        missing.join(" ")
    );
    cmd::run(Command::new("apt-get").arg("update"))?;
    cmd::run(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing),
    )
}

fn bpf_linker() -> Result<()> {
    // main() put ~/.cargo/bin on PATH, so this finds a `cargo install`ed one.
    if let Some(version) = cmd::probe(Command::new("bpf-linker").arg("--version"))? {
        println!("setup: bpf-linker ... present ({})", version.trim());
        return Ok(());
    }
    println!(
        "setup: bpf-linker {BPF_LINKER_VERSION} ... installing (cargo install builds it from source, about 1.5 min)"
    );
    cmd::run(
        Command::new("cargo")
            .env("LLVM_PREFIX", LLVM_PREFIX)
            .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
            .args(["--no-default-features", "--features", "llvm-22", "--locked"]),
    )
}

/// canaryd pins its maps under /sys/fs/bpf/canary.
fn bpffs() -> Result<()> {
    let mounts = std::fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
    let mounted = mounts.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(1) == Some(&BPFFS) && fields.get(2) == Some(&"bpf")
    });
    if mounted {
        println!("setup: bpffs at {BPFFS} ... present");
        return Ok(());
    }
    println!("setup: bpffs at {BPFFS} ... mounting");
    if !Path::new(BPFFS).is_dir() {
        bail!("{BPFFS} does not exist: is this kernel built with CONFIG_BPF_SYSCALL?");
    }
    cmd::run(Command::new("mount").args(["-t", "bpf", "bpf", BPFFS]))
}

/// `$CARGO_HOME/bin`, where `cargo install` puts bpf-linker.
pub fn cargo_bin_dir() -> Option<PathBuf> {
    let home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    Some(home.join("bin"))
}

/// PATH with the cargo bin directory in front, unless it is already there.
pub fn path_with_cargo_bin() -> Option<OsString> {
    let dir = cargo_bin_dir()?;
    let path = env::var_os("PATH").unwrap_or_default();
    if env::split_paths(&path).any(|p| p == dir) {
        return None;
    }
    env::join_paths(std::iter::once(dir).chain(env::split_paths(&path))).ok()
}
