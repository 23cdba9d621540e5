//! `cargo xtask bench`: the data path's cost in the kernel, and canary end
//! to end beside direct, nftables, HAProxy and nginx, in one run; writes
//! docs/BENCHMARKS.md and docs/bench.svg.
//!
//! One file per job: `kernel` (BPF_PROG_TEST_RUN, via the tests crate's
//! kernel-bench), `paths` (the seven set-ups), `e2e` (wrk rounds, BPF stats,
//! signals seen), `budget` (the signals budget's side-by-side triplets),
//! `control` (set-weight latency, daemon footprint), `scaling` and
//! `control_scale` (cost as the work grows, kernel and control plane),
//! `wrk`, `proc` (processes and /proc), `report`, `scaling_report` and
//! `chart` (the page and its images).

mod budget;
mod budget_cpu;
mod chart;
mod control;
mod control_scale;
mod e2e;
mod kept;
mod kernel;
mod paths;
mod proc;
mod profile;
mod report;
mod scaling;
mod scaling_report;
mod wrk;

use std::{path::Path, process::Command, time::Instant};

use anyhow::{Context, Result, ensure};
use xtask::{
    canaryd::Binaries,
    topology::{BACKEND_V4, HOST_V4, Netns},
};

use crate::{cmd, setup};
use paths::{Bins, Kind, PathEnv};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Full,
    Quick,
}

pub fn run(quick: bool, dry_run: bool) -> Result<()> {
    crate::require_root(
        "bench",
        "it loads BPF programs, creates network namespaces and runs servers in them",
    )?;
    let mode = if quick { Mode::Quick } else { Mode::Full };
    let started = Instant::now();
    let steps = if dry_run { 3 } else { 7 };

    println!("==> [1/{steps}] setup");
    setup::run()?;

    println!("==> [2/{steps}] build (release)");
    let build_started = Instant::now();
    cmd::run(Command::new("cargo").args([
        "build",
        "--release",
        "-p",
        "tests",
        "--bin",
        "kernel-bench",
        "-p",
        "canary-userspace",
        "--bin",
        "canaryd",
        "--bin",
        "canaryctl",
    ]))?;
    let bins = bins()?;
    let after_build = Instant::now();
    println!(
        "bench: built in {:.1}s",
        (after_build - build_started).as_secs_f64()
    );

    println!("==> [3/{steps}] tools and configs");
    check_tools(&bins)?;
    if dry_run {
        println!(
            "bench: dry run passed in {:.1}s after the build: binaries built, tools present, configs valid; nothing measured",
            after_build.elapsed().as_secs_f64()
        );
        return Ok(());
    }

    println!("==> [4/{steps}] kernel path (BPF_PROG_TEST_RUN)");
    let kernel_plan = kernel::Plan::new(mode);
    if mode == Mode::Quick {
        let full = kernel::Plan::new(Mode::Full);
        println!(
            "bench: quick mode: single-call cases use {} calls per run instead of {} ({} instead of {} for the signal cases)",
            kernel_plan.single, full.single, kernel_plan.signal_calls, full.signal_calls
        );
    }
    let kernel = kernel::run(&bins.kernel_bench, &kernel_plan)?;
    println!(
        "bench: profiling {} kernel-bench cases alone under perf ...",
        kernel::PROFILED.len()
    );
    let kernel_profiles = kernel::profile(&bins.kernel_bench, &kernel_plan)?;
    let scaling_plan = scaling::Plan::new(mode);
    println!(
        "bench: scaling sweep: flow tables {:?} entries (filled too), 256 services, 16 backends, IPv6",
        scaling_plan.tables
    );
    let sweep_started = Instant::now();
    let sweep = scaling::run(&bins.kernel_bench, &scaling_plan)?;
    println!(
        "bench: scaling sweep took {:.0}s",
        sweep_started.elapsed().as_secs_f64()
    );

    println!(
        "==> [5/{steps}] end to end: setting up the {} paths",
        Kind::ALL.len()
    );
    let e2e_plan = e2e::Plan::new(mode);
    let mut envs = vec![];
    for kind in Kind::ALL {
        let t = Instant::now();
        envs.push(
            PathEnv::new(kind, &bins).with_context(|| format!("setting up {}", kind.label()))?,
        );
        println!(
            "e2e: {} ready at {} ({:.1}s)",
            kind.label(),
            kind.url(),
            t.elapsed().as_secs_f64()
        );
    }
    let canary_index = envs
        .iter()
        .position(|e| e.kind == Kind::Canary)
        .context("no canary path")?;
    let xdp_mode = envs[canary_index].canaryd()?.xdp_mode()?;
    println!("e2e: canaryd attached XDP in {xdp_mode} mode");
    println!(
        "e2e: {} round(s); each path: keep-alive {} s, Connection: close {} s, one connection {} s",
        e2e_plan.rounds,
        e2e_plan.keepalive.seconds,
        e2e_plan.close.seconds,
        e2e_plan.latency.seconds
    );
    let runs = e2e::run(&mut envs, &e2e_plan)?;
    let split = envs[canary_index].canaryd()?.split()?;
    println!(
        "e2e: canary's data path over the rounds: {} new flows to stable, {} to canary ({:.2} %), {} rehashes",
        split.stable,
        split.canary,
        split.canary_percent(),
        split.rehashes
    );
    let signals = e2e::signals_seen(&envs)?;
    // Before in_place: it switches BPF run-time stats on, which would slow
    // the canary side of the comparison while they are on.
    let budget_plan = budget::Plan::new(mode, &e2e_plan);
    println!(
        "budget: {} triplet(s) of {} (order rotating): the three keep-alive runs ({} s) back to back, then the three Connection: close runs ({} s); about {} s",
        budget_plan.triplets,
        budget::order_text(&budget::PATHS),
        budget_plan.keepalive.seconds,
        budget_plan.close.seconds,
        budget_plan.seconds()
    );
    let budget_started = Instant::now();
    let triplets = budget::run(&mut envs, &budget_plan)?;
    println!(
        "budget: triplets took {:.0}s",
        budget_started.elapsed().as_secs_f64()
    );
    let cpu_plan = budget_cpu::Plan::new(mode, &e2e_plan);
    println!(
        "budget: CPU accounting, BPF run-time stats on: {} round(s) of canary and canary with signals off, keep-alive and Connection: close ({} s each)",
        cpu_plan.rounds, cpu_plan.keepalive.seconds
    );
    let cpu_accounting = budget_cpu::run(&mut envs, &cpu_plan)?;
    let in_place = e2e::in_place(&envs[canary_index], &e2e_plan)?;
    let load_profile = e2e::profile_under_load(&envs[canary_index], &e2e_plan)?;

    println!("==> [6/{steps}] control plane");
    let control = control::run(&envs[canary_index], &control::Plan::new(mode))?;
    println!("bench: removing the namespaces and stopping servers ...");
    drop(envs);
    // With nothing else running: 1 and 256 services, each its own canaryd.
    let control_scale = control_scale::run(&bins.canary, &control_scale::Plan::new(mode))?;

    println!("==> [7/{steps}] report");
    let root = crate::paths::workspace_root();
    let out_dir = match mode {
        Mode::Full => root.join("docs"),
        Mode::Quick => root.join("target/bench"),
    };
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let report = report::Report {
        mode,
        machine: report::Machine::collect(),
        xdp_mode,
        wall_seconds: started.elapsed().as_secs_f64(),
        kernel_plan: &kernel_plan,
        kernel_bin: relative(&bins.kernel_bench, &root),
        kernel: &kernel,
        e2e_plan: &e2e_plan,
        e2e: &runs,
        split,
        signals: &signals,
        budget_plan: &budget_plan,
        triplets: &triplets,
        cpu_plan: &cpu_plan,
        cpu_accounting: &cpu_accounting,
        in_place: &in_place,
        kernel_profiles: &kernel_profiles,
        load_profile: &load_profile,
        control: &control,
        scaling_plan: &scaling_plan,
        scaling: &sweep,
        control_scale: &control_scale,
    };
    let md = out_dir.join("BENCHMARKS.md");
    let svg = out_dir.join("bench.svg");
    std::fs::write(&svg, report.svg()).with_context(|| format!("writing {}", svg.display()))?;
    let scaling_svg = out_dir.join(scaling_report::CHART);
    std::fs::write(&scaling_svg, report.scaling_svg())
        .with_context(|| format!("writing {}", scaling_svg.display()))?;
    // Sections other commands measured stay (`kept`).
    let old = std::fs::read_to_string(&md).unwrap_or_default();
    std::fs::write(&md, kept::carry_over(&old, report.markdown("bench.svg")))
        .with_context(|| format!("writing {}", md.display()))?;
    report.print();
    println!(
        "\nbench: wrote {}, {} and {} in {:.0}s",
        relative(&md, &root),
        relative(&svg, &root),
        relative(&scaling_svg, &root),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn relative(p: &Path, root: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}

/// The release binaries, where cargo put them.
fn bins() -> Result<Bins> {
    let target = crate::paths::target_dir().join("release");
    let kernel_bench = target.join("kernel-bench");
    ensure!(
        kernel_bench.exists(),
        "{} is missing after the build",
        kernel_bench.display()
    );
    Ok(Bins {
        canary: Binaries::in_dir(&target)?,
        kernel_bench,
    })
}

/// Every tool is present and every generated config passes its tool's own
/// check; nothing is started.
fn check_tools(bins: &Bins) -> Result<()> {
    for (tool, args) in [
        ("wrk", &["-v"][..]),
        ("haproxy", &["-v"]),
        ("nginx", &["-v"]),
        ("nft", &["-v"]),
        ("ip", &["-V"]),
        ("perf", &["--version"]),
    ] {
        let found = proc::first_line(Command::new(tool).args(args))
            .with_context(|| format!("{tool} is not installed: run `cargo xtask setup`"))?;
        println!("bench: {tool} ... {found}");
    }
    ensure!(
        Path::new(paths::NGINX_STREAM_MODULE).exists(),
        "{} is missing: install libnginx-mod-stream (`cargo xtask setup`)",
        paths::NGINX_STREAM_MODULE
    );
    for b in [
        &bins.canary.canaryd,
        &bins.canary.canaryctl,
        &bins.kernel_bench,
    ] {
        let ok = Command::new(b).arg("--help").output()?.status.success();
        ensure!(ok, "{} --help failed", b.display());
    }

    // Checks that talk to the kernel (nft -c) or bind (nginx -t) run in a
    // namespace of our own that holds the bench's addresses.
    let ns = Netns::new("check")?;
    for addr in [HOST_V4, BACKEND_V4[0]] {
        ns.ip(&["address", "add", &format!("{addr}/32"), "dev", "lo"])?;
    }
    let dir = proc::TempDir::new("check")?;
    let haproxy = dir.write("haproxy.cfg", &paths::haproxy_conf())?;
    ns.exec(&["haproxy", "-c", "-f", &haproxy.to_string_lossy()])
        .context("haproxy -c on the bench's config")?;
    for (name, text) in [
        ("stream.conf", paths::nginx_stream_conf(dir.path())),
        ("backend0.conf", paths::nginx_backend_conf(dir.path(), 0)),
    ] {
        let conf = dir.write(name, &text)?;
        let d = dir.path().to_string_lossy();
        ns.exec(&[
            "nginx",
            "-t",
            "-q",
            "-c",
            &conf.to_string_lossy(),
            "-p",
            &d,
            "-e",
            &format!("{d}/check.error.log"),
        ])
        .with_context(|| format!("nginx -t on the bench's {name}"))?;
    }
    let rules = dir.write("dnat.nft", &paths::nft_rules())?;
    ns.exec(&["nft", "-c", "-f", &rules.to_string_lossy()])
        .context("nft -c on the DNAT rules")?;
    println!("bench: configs ... haproxy -c, nginx -t (stream, backend), nft -c: valid");
    Ok(())
}
