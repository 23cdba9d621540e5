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
    // gRPC end-to-end tests: a real gRPC server and load client
    // (tests/grpc/*.py) over HTTP/2 without TLS. Their methods take and
    // give raw bytes, so no protoc code generation is needed.
    "python3-grpcio",
    // The Python client's tests (canary-userspace/python/tests), run by
    // the tests crate's python_client suite against a real canaryd.
    "python3-pytest",
    // Rollout gates query a real Prometheus server (PromQL), and the metrics
    // output is checked with its `promtool check metrics`.
    "prometheus",
    // `cargo xtask bench`: the load generator, the L4 proxies canary is
    // compared with (nginx also serves as every path's backend), and nginx's
    // stream module, which Debian ships apart.
    "wrk",
    "haproxy",
    "nginx",
    "libnginx-mod-stream",
    // Tests pin maps of a wrong layout where canary's would be (canaryd
    // must refuse them); profiling and map inspection.
    "bpftool",
    // `cargo xtask bench` profiles the data path (docs/BENCHMARKS.md,
    // "Profile").
    "linux-perf",
    // Fleet rollouts are coordinated through etcd v3: the fleet tests and
    // the demo run a real etcd (Debian 12's is 3.4) inside their namespaces.
    "etcd-server",
    // etcdctl, to read a fleet's keys by hand (`etcdctl get --prefix
    // /canary/v1/`) when a fleet test or the demo fails.
    "etcd-client",
    // The `etcd-client` crate's build script compiles etcd's .proto files
    // with protoc.
    "protobuf-compiler",
    // `cargo xtask package` and its test: the package is checked with
    // lintian (dpkg-deb and dpkg-shlibdeps come with dpkg-dev).
    "lintian",
    "dpkg-dev",
];

/// Packages that come with a system service, and the service's systemd unit.
/// The bench, the fleet tests and the demo run them only in their own
/// namespaces with their own configs; installing them must not start them on
/// the machine's real ports (a system etcd would hold localhost:2379).
const PACKAGES_WITH_SERVICES: &[(&str, &str)] = &[
    ("prometheus", "prometheus.service"),
    ("haproxy", "haproxy.service"),
    ("nginx", "nginx.service"),
    // Not named after its package.
    ("etcd-server", "etcd.service"),
];
/// Debian's hook that tells maintainer scripts whether they may start a
/// service; exit code 101 means "no".
const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

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
    let starts_services = missing.iter().any(|p| service_of(p).is_some());
    let policy = if starts_services {
        Some(NoServiceStart::new()?)
    } else {
        None
    };
    let installed = cmd::run(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing),
    );
    drop(policy);
    installed?;
    for unit in missing.iter().filter_map(|p| service_of(p)) {
        stop_service(unit)?;
    }
    Ok(())
}

/// The systemd unit `package` installs, if it is one that starts a service.
fn service_of(package: &str) -> Option<&'static str> {
    PACKAGES_WITH_SERVICES
        .iter()
        .find(|(p, _)| *p == package)
        .map(|&(_, unit)| unit)
}

/// A policy-rc.d that forbids starting services, in place while it lives;
/// an existing one (a container's, say) is left as it is.
struct NoServiceStart {
    created: bool,
}

impl NoServiceStart {
    fn new() -> Result<NoServiceStart> {
        use std::os::unix::fs::PermissionsExt;
        if Path::new(POLICY_RC_D).exists() {
            println!("setup: {POLICY_RC_D} ... present (left as it is)");
            return Ok(NoServiceStart { created: false });
        }
        println!(
            "setup: {POLICY_RC_D} ... writing one that refuses service starts during the install"
        );
        std::fs::write(
            POLICY_RC_D,
            "#!/bin/sh\n# cargo xtask setup: no service starts during this install\nexit 101\n",
        )
        .with_context(|| format!("writing {POLICY_RC_D}"))?;
        std::fs::set_permissions(POLICY_RC_D, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("making {POLICY_RC_D} executable"))?;
        Ok(NoServiceStart { created: true })
    }
}

impl Drop for NoServiceStart {
    fn drop(&mut self) {
        if self.created {
            println!("setup: {POLICY_RC_D} ... removing");
            if let Err(e) = std::fs::remove_file(POLICY_RC_D) {
                eprintln!("setup: cannot remove {POLICY_RC_D}: {e}");
            }
        }
    }
}

/// Belt and braces for a just-installed package's service: on a machine run
/// by systemd, stop it and keep it from starting at boot (policy-rc.d only
/// kept the install from starting it; the package still enabled it). Tests
/// and the bench start their own instances inside network namespaces.
fn stop_service(unit: &str) -> Result<()> {
    if !Path::new("/run/systemd/system").is_dir() {
        return Ok(());
    }
    println!("setup: {unit} ... stopping and disabling (tests and bench run their own)");
    // Failing is fine: the unit may not exist or may already be stopped.
    cmd::probe(Command::new("systemctl").args(["disable", "--now", unit]))?;
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A name here that setup does not install (a typo, say) matches
    /// nothing, and the package it meant would install with its service
    /// started.
    #[test]
    fn every_package_with_a_service_is_one_setup_installs() {
        for (package, unit) in PACKAGES_WITH_SERVICES {
            assert!(
                DEBIAN_PACKAGES.contains(package),
                "{package} ({unit}) is not in DEBIAN_PACKAGES"
            );
            assert!(unit.ends_with(".service"), "{unit}");
        }
    }
}
