//! `cargo xtask`: the project's own tasks (setup, test, demo, bench), in
//! Rust so they run wherever cargo does. One module per subcommand.

mod bench;
mod demo;
mod setup;
mod test;

// In the library, so the tests crate can build the package too.
use xtask::{cmd, paths};

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "canary's project tasks: setup, test, demo, bench, man, package (the Debian package)"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what this Debian machine lacks to build and test canary.
    ///
    /// Checks each step first and skips it when already present:
    ///   - rust-src for the nightly toolchain (the eBPF crate is built with -Z build-std)
    ///   - Debian packages llvm-22-dev libzstd-dev zlib1g-dev (to build bpf-linker) and
    ///     iproute2 iputils-ping nftables python3-scapy python3-grpcio prometheus (for the tests) and
    ///     wrk haproxy nginx libnginx-mod-stream (for the benchmarks) and
    ///     lintian dpkg-dev (for `cargo xtask package`); packages that
    ///     ship a service are installed with service starts refused (policy-rc.d)
    ///   - bpf-linker (cargo install from source against LLVM 22, about 1.5 min)
    ///   - bpffs mounted at /sys/fs/bpf (canaryd pins its maps there)
    ///
    /// Needs root.
    #[command(verbatim_doc_comment, after_help = "Example:\n  cargo xtask setup")]
    Setup,

    /// Set up, build the workspace, then run every test.
    ///
    /// Runs, stopping at the first failure:
    ///   1. cargo xtask setup
    ///   2. cargo build --all-targets --workspace --exclude canary-ebpf
    ///      (build errors show on their own)
    ///   3. cargo fmt --all --check, cargo clippy --all-targets
    ///      --workspace --exclude canary-ebpf -- -D warnings, and clippy
    ///      -D warnings on canary-ebpf (nightly, bpfel-unknown-none)
    ///   4. cargo test --workspace --exclude canary-ebpf ARGS
    ///      (with -p/--package in ARGS, only those packages)
    ///
    /// Prints the total time at the end. Needs root: the tests load BPF
    /// programs and create network namespaces.
    #[command(
        verbatim_doc_comment,
        after_help = "Examples:\n  cargo xtask test\n  cargo xtask test -- -p tests flow_table -- --nocapture"
    )]
    Test {
        /// Extra arguments for `cargo test`, after `--`.
        #[arg(last = true, value_name = "ARGS")]
        cargo_test_args: Vec<String>,
    },

    /// Set up, then run the canary demo: a rollout of a model server.
    ///
    /// Two iris classifiers behind canary's data path, canaryd rolling the
    /// canary out (5/25/50/100 %, 3 s intervals) on the kernel's error rate
    /// and p99 and a PromQL accuracy gate (a real Prometheus), live output,
    /// a timeline chart under target/demo/. Default scenario: errors (the
    /// canary is rolled back); --scenario healthy|errors|latency|accuracy|grpc|split
    /// (grpc: the same models over gRPC, h2c, failing with UNAVAILABLE).
    /// --fleet N: the same rollout on N hosts in one fleet (etcd), its leader
    /// killed with kill -9 half way.
    ///
    /// Runs:
    ///   1. cargo xtask setup
    ///   2. cargo build --release -p canary-userspace --bins
    ///   3. cargo run --release -p tests --bin canary-demo -- ARGS
    ///
    /// Needs root: the demo loads BPF programs and creates network namespaces.
    #[command(
        verbatim_doc_comment,
        after_help = "Examples:\n  cargo xtask demo\n  cargo xtask demo -- --scenario healthy\n  cargo xtask demo -- --scenario grpc\n  cargo xtask demo -- --fleet 3\n  cargo xtask demo -- --help"
    )]
    Demo {
        /// Arguments for canary-demo, after `--`.
        #[arg(last = true, value_name = "ARGS")]
        demo_args: Vec<String>,
    },

    /// Set up, build (release), then measure canary against direct, nftables,
    /// HAProxy and nginx, and write docs/BENCHMARKS.md with its charts.
    ///
    /// Runs:
    ///   1. cargo xtask setup
    ///   2. cargo build --release (kernel-bench of the tests crate, canaryd, canaryctl)
    ///   3. tool and config checks (wrk, haproxy -c, nginx -t, nft -c, perf)
    ///   4. kernel path: kernel-bench (BPF_PROG_TEST_RUN beside empty floor
    ///      programs), three cases profiled alone with perf, and the scaling
    ///      sweep (flow-table sizes, services, backends, IPv6)
    ///   5. end to end: direct, empty XDP+TC and TC+TC programs, canary at XDP
    ///      and at TC, canary with signals off, nftables, HAProxy, nginx stream,
    ///      each in its own namespace topology, wrk rounds interleaved; the
    ///      signals budget's triplets; BPF run-time stats and a perf profile of
    ///      all CPUs under the same load
    ///   6. control plane: canaryctl set-weight to the kernel, canaryd RSS and
    ///      idle CPU, status and /metrics with 1 and 256 services
    ///   7. report: docs/BENCHMARKS.md (targets, signals budget, profile,
    ///      scaling), docs/bench.svg, docs/bench-scaling.svg, the tables on stdout
    ///
    /// About 16 minutes. Traffic stays inside namespaces it creates (198.18.0.0/15).
    /// Needs root. Benchmarks are not tests: nothing asserts a timing.
    #[command(
        verbatim_doc_comment,
        after_help = "Examples:\n  cargo xtask bench\n  cargo xtask bench --quick\n  cargo xtask bench --dry-run"
    )]
    Bench {
        /// Fewer samples, one short round (about 4 minutes); writes
        /// target/bench/BENCHMARKS.md and its charts, leaving docs/ alone.
        #[arg(long)]
        quick: bool,
        /// Steps 1-3 only: build, check tools and configs, measure nothing
        /// (what CI runs to keep the harness working).
        #[arg(long)]
        dry_run: bool,
    },

    /// Write the man pages of canaryd (section 8) and canaryctl (section 1,
    /// one page per subcommand) into target/man/ (or --out).
    ///
    /// Rendered from the clap definitions the binaries parse, so no build
    /// of the eBPF object is needed. Read one with `man -l target/man/canaryd.8`.
    #[command(
        verbatim_doc_comment,
        after_help = "Examples:\n  cargo xtask man\n  cargo xtask man --out /usr/local/share/man/man8"
    )]
    Man {
        /// Directory to write into.
        #[arg(long, value_name = "DIR")]
        out: Option<std::path::PathBuf>,
    },

    /// Build the Debian package target/debian/canary_<version>_amd64.deb.
    ///
    /// canaryd in /usr/sbin, canaryctl in /usr/bin, the systemd unit (not
    /// enabled or started on install), /etc/canary/canary.toml (a conffile),
    /// man pages, bash/zsh/fish completions, the Grafana dashboard and alert
    /// rules in /usr/share/canary. Purging removes /etc/canary and
    /// /var/lib/canary.
    ///
    /// Runs:
    ///   1. cargo build --release -p canary-userspace --bins
    ///   2. the tree under target/debian/, Depends from dpkg-shlibdeps,
    ///      dpkg-deb --root-owner-group --build
    ///
    /// Needs the eBPF toolchain (`cargo xtask setup`), not root. Check the
    /// result with `lintian target/debian/canary_*.deb`.
    #[command(
        verbatim_doc_comment,
        after_help = "Examples:\n  cargo xtask package\n  apt install ./target/debian/canary_0.1.0_amd64.deb"
    )]
    Package,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(path) = setup::path_with_cargo_bin() {
        // SAFETY: no other thread exists yet. Every command run from here on
        // (bpf-linker, cargo install'ed tools) is then found in ~/.cargo/bin.
        unsafe { std::env::set_var("PATH", path) };
    }
    let result = match &cli.task {
        Task::Setup => setup::run(),
        Task::Test { cargo_test_args } => test::run(cargo_test_args),
        Task::Demo { demo_args } => demo::run(demo_args),
        Task::Bench { quick, dry_run } => bench::run(*quick, *dry_run),
        Task::Man { out } => man(out.clone()),
        Task::Package => xtask::package::build().map(|_| ()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `cargo xtask man`
fn man(out: Option<std::path::PathBuf>) -> Result<()> {
    let dir = out.unwrap_or_else(|| paths::target_dir().join("man"));
    for page in xtask::man::write(&dir)? {
        println!("{}", page.display());
    }
    Ok(())
}

/// Fails with one line saying why `task` needs root.
fn require_root(task: &str, why: &str) -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!("`cargo xtask {task}` must run as root: {why}");
    }
    Ok(())
}
