//! docs/BENCHMARKS.md from one run's figures, and the summary printed at
//! the end of the run.

mod speed;

use std::{fmt::Write as _, process::Command};

use xtask::stats::median;

use super::{
    Mode,
    budget::{self, Rates, Triplet},
    budget_cpu::{self, Accounted},
    chart::{self, Group},
    control, control_scale,
    e2e::{self, InPlace, PathRuns, SignalsSeen, Summary},
    kernel::{self, Results as KernelResults},
    paths::{self, CANARY_PERCENT, Kind, Split},
    proc::first_line,
    profile::Profile,
    scaling, scaling_report,
    wrk::Measured,
};

/// What the machine is, read at the end of the run.
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub virtualized: bool,
    pub kernel: String,
    pub date: String,
    pub tools: Vec<(&'static str, String)>,
}

impl Machine {
    pub fn collect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |name: &str| {
            cpuinfo
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        };
        let line = |cmd: &mut Command| {
            first_line(cmd)
                .ok()
                .filter(|l| !l.is_empty())
                .unwrap_or_else(|| "unknown".into())
        };
        let tools = [
            ("wrk", Command::new("wrk").arg("-v")),
            ("HAProxy", Command::new("haproxy").arg("-v")),
            ("nginx", Command::new("nginx").arg("-v")),
            ("nftables", Command::new("nft").arg("-v")),
        ]
        .into_iter()
        .map(|(name, cmd)| (name, line(cmd)))
        .collect();
        Machine {
            cpu: field("model name").unwrap_or_else(|| "unknown".into()),
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            virtualized: field("flags").is_some_and(|f| f.split(' ').any(|w| w == "hypervisor")),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_default(),
            date: line(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"])),
            tools,
        }
    }
}

/// Everything one run measured.
pub struct Report<'a> {
    pub mode: Mode,
    pub machine: Machine,
    pub xdp_mode: canary_userspace::XdpMode,
    pub wall_seconds: f64,
    pub kernel_plan: &'a kernel::Plan,
    pub kernel_bin: String,
    pub kernel: &'a KernelResults,
    pub e2e_plan: &'a e2e::Plan,
    pub e2e: &'a [PathRuns],
    /// canary's new flows and rehashes over the rounds.
    pub split: Split,
    /// Signals both canary paths counted over the rounds.
    pub signals: &'a SignalsSeen,
    pub budget_plan: &'a budget::Plan,
    /// The signals budget's end-to-end runs, after the rounds.
    pub triplets: &'a [Triplet],
    pub cpu_plan: &'a budget_cpu::Plan,
    /// The same budget by CPU accounting (BPF run-time stats on).
    pub cpu_accounting: &'a budget_cpu::Results,
    pub in_place: &'a InPlace,
    /// perf profiles of single kernel-bench cases (`kernel::PROFILED`).
    pub kernel_profiles: &'a [Profile],
    /// perf profile of all CPUs under the keep-alive load.
    pub load_profile: &'a Profile,
    pub control: &'a control::Results,
    pub scaling_plan: &'a scaling::Plan,
    pub scaling: &'a scaling::Results,
    pub control_scale: &'a control_scale::Results,
}

/// One goal (a target of issue 4, a line of issue 9's signals budget) and
/// how this run did against it.
pub struct Target {
    pub what: &'static str,
    pub goal: String,
    pub measured: String,
    pub met: bool,
    pub by: String,
}

impl Report<'_> {
    fn summary(&self, kind: Kind) -> Summary {
        self.e2e
            .iter()
            .find(|p| p.kind == kind)
            .map(PathRuns::summary)
            .unwrap_or_default()
    }

    /// `f(path's run, direct's run)` for each round.
    fn per_round(
        &self,
        kind: Kind,
        f: fn(&Measured, &Measured) -> f64,
        runs: fn(&PathRuns) -> &Vec<Measured>,
    ) -> Vec<f64> {
        let find = |k: Kind| self.e2e.iter().find(|p| p.kind == k);
        let (Some(path), Some(direct)) = (find(kind), find(Kind::Direct)) else {
            return vec![];
        };
        runs(path)
            .iter()
            .zip(runs(direct))
            .map(|(p, d)| f(p, d))
            .collect()
    }

    fn kernel_ns(&self, id: &str) -> f64 {
        self.kernel.case(id).map_or(f64::NAN, |c| c.median_ns)
    }

    pub fn targets(&self) -> Vec<Target> {
        let direct = self.summary(Kind::Direct);
        let canary = self.summary(Kind::Canary);
        let floor = self.kernel_ns("floor_xdp");
        let est = self.kernel_ns("established") - floor;
        let floor1 = self.kernel_ns("floor_xdp_single");
        let full = self.kernel_ns("new_flow_full") - floor1;
        let rps = canary.rps / direct.rps;
        let cps = canary.conns_per_s / direct.conns_per_s;
        let p50 = canary.p50_us - direct.p50_us;
        let cpu = canary.cpu_us_per_req - direct.cpu_us_per_req;
        // The same comparison within each round: how far noise moves it.
        let spread = |f: fn(&Measured, &Measured) -> f64,
                      runs: fn(&PathRuns) -> &Vec<Measured>,
                      unit: &str,
                      precision: usize| {
            let v = self.per_round(Kind::Canary, f, runs);
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if v.len() < 2 {
                String::new()
            } else {
                format!("; rounds {lo:.precision$}{unit} to {hi:.precision$}{unit}")
            }
        };
        let miss_ns = |v: f64, goal: f64| {
            let by = margin(v, goal, "ns", 0);
            if v <= goal {
                by
            } else {
                format!("{by} ({:.1}× the budget)", v / goal)
            }
        };
        vec![
            Target {
                what: "established flow, kernel",
                goal: "≤ 40 ns above the empty XDP program".into(),
                measured: format!("+{est:.0} ns ({:.0} vs {floor:.0} ns)", est + floor),
                met: est <= 40.0,
                by: miss_ns(est, 40.0),
            },
            Target {
                what: "new flow at a full table, kernel",
                goal: "< 500 ns".into(),
                measured: format!(
                    "{full:.0} ns above the one-call floor ({:.0} − {floor1:.0} ns, mean with LRU evictions)",
                    full + floor1
                ),
                met: full < 500.0,
                by: miss_ns(full, 500.0),
            },
            Target {
                what: "keep-alive requests/s",
                goal: "≥ 0.95× direct".into(),
                measured: format!(
                    "{rps:.3}×{}",
                    spread(|c, d| c.rps / d.rps, |p| &p.keepalive, "×", 2)
                ),
                met: rps >= 0.95,
                by: ratio_by(rps, 0.95),
            },
            Target {
                what: "new connections/s",
                goal: "≥ 0.90× direct".into(),
                measured: format!(
                    "{cps:.3}×{}",
                    spread(|c, d| c.rps / d.rps, |p| &p.close, "×", 2)
                ),
                met: cps >= 0.9,
                by: ratio_by(cps, 0.9),
            },
            Target {
                what: "p50 added latency (one connection)",
                goal: "≤ 10 µs".into(),
                measured: format!(
                    "{p50:+.0} µs ({:.0} vs {:.0} µs{})",
                    canary.p50_us,
                    direct.p50_us,
                    spread(|c, d| c.p50_us - d.p50_us, |p| &p.latency, " µs", 0)
                ),
                met: p50 <= 10.0,
                by: margin(p50, 10.0, "µs", 0),
            },
            Target {
                what: "CPU per request (keep-alive)",
                goal: "≤ 3 µs above direct".into(),
                measured: format!(
                    "{cpu:+.2} µs ({:.2} vs {:.2} µs{})",
                    canary.cpu_us_per_req,
                    direct.cpu_us_per_req,
                    spread(
                        |c, d| c.cpu_us_per_req - d.cpu_us_per_req,
                        |p| &p.keepalive,
                        " µs",
                        2
                    )
                ),
                met: cpu <= 3.0,
                by: margin(cpu, 3.0, "µs", 2),
            },
        ]
    }

    /// Growth in % of a kernel case's cost above its floor with signals on
    /// (`on`) over the same case with them off (`off`), and the two costs
    /// above the floor.
    fn growth(&self, on: &str, off: &str) -> (f64, f64, f64) {
        let floor = self
            .kernel
            .case(off)
            .and_then(|c| self.kernel.floor_of(c))
            .map_or(f64::NAN, |f| f.median_ns);
        let on = self.kernel_ns(on) - floor;
        let off = self.kernel_ns(off) - floor;
        ((on - off) / off * 100.0, on, off)
    }

    /// Issue 9's budget for the health signals: each line compares canary
    /// with signals against canary without them, in this one run.
    pub fn signals_budget(&self) -> Vec<Target> {
        const GROWTH: f64 = 35.0;
        const RATIO: f64 = 0.02;
        let kernel_line = |what: &'static str,
                           steady: (&str, &str),
                           per_request: (&str, &str),
                           timed: Option<&str>| {
            let (g1, on1, off1) = self.growth(steady.0, steady.1);
            let (g2, on2, off2) = self.growth(per_request.0, per_request.1);
            let worst = g1.max(g2);
            // Context, not a budget line: what a start costs when it is
            // timed (every one below the sampler's floor rate).
            let timed = timed.map_or(String::new(), |id| {
                let (g3, on3, _) = self.growth(id, per_request.1);
                format!(
                    "; a timed start (below 320 requests/s per CPU and version, or with \
                     `latency_sampling = false`): {g3:+.1} % ({on3:.0} ns)"
                )
            });
            Target {
                what,
                goal: format!("grows ≤ {GROWTH:.0} % with signals"),
                measured: format!(
                    "{g1:+.1} % in repeat mode (with {on1:.0}, without {off1:.0} ns above the \
                     floor); {g2:+.1} % one call per packet (with {on2:.0}, without {off2:.0} \
                     ns){timed}"
                ),
                met: g1 <= GROWTH && g2 <= GROWTH,
                by: if worst <= GROWTH {
                    format!("{:.1} points to spare", GROWTH - worst)
                } else {
                    format!("missed by {:.1} points", worst - GROWTH)
                },
            }
        };
        let n = self.triplets.len();
        // The figure is the CPU accounting's; the triplets must agree with
        // it within twice their median's standard error, or the line fails
        // (the accounting would be missing a cost).
        let ratio_line =
            |what: &'static str, load: fn(&Triplet) -> &Rates, accounted: &Accounted| {
                let l = budget::line(self.triplets, load);
                let implied = accounted.implied_difference(l.off);
                let se = budget::median_standard_error(self.triplets, load);
                let agrees = (l.median - implied).abs() <= 2.0 * se;
                let (on_ns, off_ns) = accounted.program_ns();
                let spread = if n < 2 {
                    String::new()
                } else {
                    format!(", {:+.3} to {:+.3}, standard error {se:.3}", l.min, l.max)
                };
                // The accounting assumes a CPU-bound machine.
                let saturated = accounted.min_busy_share() >= 0.9;
                let met = implied.abs() <= RATIO && agrees && saturated;
                Target {
                    what,
                    goal: format!("within ±{RATIO} of signals off"),
                    measured: format!(
                        "{implied:+.4} by CPU accounting: the programs take {on_ns:.0} ns per \
                     request with signals, {off_ns:.0} without, of {:.1} µs of machine CPU per \
                     request (busy ≥ {:.0} %); triplets: median {:+.3} (with {:.3}×, without \
                     {:.3}× direct{spread}), {} the accounting",
                        accounted.cpu_ns() / 1000.0,
                        accounted.min_busy_share() * 100.0,
                        l.median,
                        l.on,
                        l.off,
                        if agrees {
                            "consistent with"
                        } else {
                            "NOT consistent with"
                        }
                    ),
                    met,
                    by: if !saturated {
                        "the machine was not saturated: the accounting does not apply".into()
                    } else if !agrees {
                        "the triplets disagree with the accounting".into()
                    } else if met {
                        format!("{:.3} to spare", RATIO - implied.abs())
                    } else {
                        format!("missed by {:.3}", implied.abs() - RATIO)
                    },
                }
            };
        vec![
            kernel_line(
                "established ingress packet, cost above the empty program",
                ("established", "established_no_signals"),
                ("request_start", "request_start_no_signals"),
                Some("request_start_timed"),
            ),
            kernel_line(
                "egress reply translation, cost above the empty program",
                ("egress", "egress_no_signals"),
                ("response", "response_no_signals"),
                None,
            ),
            ratio_line(
                "keep-alive requests/s, ratio to direct",
                |t| &t.keepalive,
                &self.cpu_accounting.keepalive,
            ),
            ratio_line(
                "new connections/s, ratio to direct",
                |t| &t.close,
                &self.cpu_accounting.close,
            ),
        ]
    }

    /// docs/bench.svg: each non-direct path's ratios to direct.
    pub fn svg(&self) -> String {
        let direct = self.summary(Kind::Direct);
        let others: Vec<Kind> = Kind::ALL
            .into_iter()
            .filter(|k| *k != Kind::Direct)
            .collect();
        let group = |title: &str, hint, f: fn(&Summary) -> f64| Group {
            title: title.to_owned(),
            hint,
            ratios: others
                .iter()
                .map(|k| f(&self.summary(*k)) / f(&direct))
                .collect(),
        };
        let groups = [
            group("keep-alive requests/s", "higher is better", |s| s.rps),
            group("new connections/s", "higher is better", |s| s.conns_per_s),
            group("CPU per request", "lower is better", |s| s.cpu_us_per_req),
            group("p50 latency, 1 connection", "lower is better", |s| s.p50_us),
        ];
        let names: Vec<&str> = others.iter().map(|k| k.label()).collect();
        chart::svg(
            &format!(
                "Ratio to direct, medians of {} round(s) ({}, {})",
                self.e2e_plan.rounds,
                self.machine.kernel,
                self.xdp_mode_text()
            ),
            &names,
            &groups,
        )
    }

    fn xdp_mode_text(&self) -> String {
        format!("canary XDP in {} mode on veth", self.xdp_mode)
    }

    /// The end-to-end table, as printed and as in the doc.
    fn e2e_table(&self) -> String {
        let direct = self.summary(Kind::Direct);
        let mut t = String::from(
            "| path | keep-alive req/s | × direct | loaded p50 / p99 (µs) | CPU µs/req | vs direct | new conn/s | × direct | CPU µs/conn | 1-conn p50 / p99 (µs) | p50 vs direct | errors |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for kind in Kind::ALL {
            let s = self.summary(kind);
            let _ = writeln!(
                t,
                "| {} | {} | {:.3} | {:.0} / {:.0} | {:.2} | {:+.2} | {} | {:.3} | {:.1} | {:.0} / {:.0} | {:+.0} µs | {} |",
                kind.label(),
                thousands(s.rps),
                s.rps / direct.rps,
                s.loaded_p50_us,
                s.loaded_p99_us,
                s.cpu_us_per_req,
                s.cpu_us_per_req - direct.cpu_us_per_req,
                thousands(s.conns_per_s),
                s.conns_per_s / direct.conns_per_s,
                s.cpu_us_per_conn,
                s.p50_us,
                s.p99_us,
                s.p50_us - direct.p50_us,
                s.errors
            );
        }
        t
    }

    fn kernel_table(&self) -> String {
        let mut t = String::from(
            "| case | mode | ns/packet | floor | above floor | × floor | p50 / p99 of calls | runs (ns) |\n\
             |---|---|---:|---:|---:|---:|---:|---|\n",
        );
        for c in &self.kernel.cases {
            let floor = self.kernel.floor_of(c);
            let is_floor = c.id.starts_with("floor");
            let (f, above, x) = match floor {
                Some(f) if !is_floor => (
                    format!("{:.0}", f.median_ns),
                    format!("{:+.0}", c.median_ns - f.median_ns),
                    format!("{:.2}", c.median_ns / f.median_ns),
                ),
                _ => ("–".into(), "–".into(), "1.00".into()),
            };
            let pct = match (c.p50_ns, c.p99_ns) {
                (Some(a), Some(b)) => format!("{a:.0} / {b:.0}"),
                _ => "–".into(),
            };
            let runs: Vec<String> = c.runs_ns.iter().map(|r| format!("{r:.0}")).collect();
            let _ = writeln!(
                t,
                "| {} | {} | {:.0} | {f} | {above} | {x} | {pct} | {} |",
                c.name,
                c.mode,
                c.median_ns,
                runs.join(", ")
            );
        }
        t
    }

    fn targets_table(&self) -> String {
        goals_table("target", self.targets())
    }

    fn budget_table(&self) -> String {
        goals_table("budget line", self.signals_budget())
    }

    /// Every triplet of the signals budget: rates, and each one's
    /// difference of ratios to direct.
    fn triplets_table(&self) -> String {
        let mut t = String::from(
            "| triplet | order | keep-alive req/s: direct / with / without | with − without (× direct) | new conn/s: direct / with / without | with − without (× direct) | errors |\n\
             |---:|---|---:|---:|---:|---:|---:|\n",
        );
        let rates = |r: &Rates| {
            format!(
                "{} / {} / {}",
                thousands(r.direct),
                thousands(r.on),
                thousands(r.off)
            )
        };
        for (i, tr) in self.triplets.iter().enumerate() {
            let _ = writeln!(
                t,
                "| {} | {} | {} | {:+.3} | {} | {:+.3} | {} |",
                i + 1,
                budget::order_text(&tr.order),
                rates(&tr.keepalive),
                tr.keepalive.difference(),
                rates(&tr.close),
                tr.close.difference(),
                tr.errors
            );
        }
        t
    }

    /// What `cargo xtask bench` prints at the end.
    pub fn print(&self) {
        println!(
            "\nkernel path (BPF_PROG_TEST_RUN, medians of {} runs):",
            self.kernel_plan.runs
        );
        print!("{}", self.kernel_table());
        println!(
            "\nend to end (medians of {} round(s), {}):",
            self.e2e_plan.rounds,
            self.xdp_mode_text()
        );
        print!("{}", self.e2e_table());
        println!("\ntargets:");
        print!("{}", self.targets_table());
        println!("\nsignals budget:");
        print!("{}", self.budget_table());
        println!("\nsignals budget, end to end, each triplet:");
        print!("{}", self.triplets_table());
        println!("\ncost as the work grows (ns above the floor, × the baseline's):");
        print!("{}", scaling_report::table(self.scaling));
        print!("{}", scaling_report::steps_text(self.scaling));
        println!("\ncontrol plane by services:");
        print!("{}", scaling_report::control_table(self.control_scale));
    }

    /// docs/bench-scaling.svg.
    pub fn scaling_svg(&self) -> String {
        scaling_report::svg(self.scaling, &self.machine.kernel)
    }

    pub fn markdown(&self, chart_file: &str) -> String {
        let m = &self.machine;
        let k = self.kernel_plan;
        let e = self.e2e_plan;
        let c = self.control;
        let ip = self.in_place;
        let url = Kind::Canary.url();
        let mut d = String::new();
        let (flag, quick_note) = match self.mode {
            Mode::Quick => (
                " --quick",
                "\n> **Quick run** (`--quick`): fewer single-call samples, one short round, one \
                signals budget triplet. \
                Figures are rougher than a full run's; `cargo xtask bench` writes the real page.\n",
            ),
            Mode::Full => ("", ""),
        };
        let _ = write!(
            d,
            "# Benchmarks\n\n\
             Written by `cargo xtask bench{flag}` on {}; every figure on this page comes from that one \
             run ({:.0} s wall time, as root). Run `cargo xtask bench` to refresh the page; \
             `cargo xtask bench --quick` (about 4 minutes, rougher figures) writes to \
             `target/bench/` instead, and `cargo xtask bench --dry-run` only builds and checks the \
             tools and configs.\n{quick_note}\n\
             Benchmarks are not tests: nothing asserts a timing. The targets below are from issue 4. \
             This machine is a small virtual machine, and its figures move by several percent from \
             run to run (compare the rounds in [Every run](#end-to-end)): read ratios, not absolute \
             numbers, and small differences as noise.\n\n",
            m.date, self.wall_seconds
        );

        let _ = write!(
            d,
            "## Machine\n\n\
             | | |\n|---|---|\n\
             | CPU | {} ({} cores{}) |\n\
             | kernel | {} |\n\
             | BPF JIT (`net.core.bpf_jit_enable`) | {} |\n\
             | canary's XDP on the host veth | {} mode (as canaryd reported it) |\n",
            m.cpu,
            m.cores,
            if m.virtualized {
                ", virtual machine"
            } else {
                ""
            },
            m.kernel,
            self.kernel.jit,
            self.xdp_mode,
        );
        for (name, version) in &m.tools {
            let _ = writeln!(d, "| {name} | `{version}` |");
        }

        let _ = write!(
            d,
            "\n## Targets\n\n{}\n\
             End-to-end figures are medians over rounds; \"rounds\" gives the same comparison \
             within each round (canary's run against direct's run of that round), so a target \
             that the median meets or misses by less than that spread is within this machine's \
             noise. Why, and where the time goes: see [Findings](#findings).\n\n",
            self.targets_table()
        );
        d.push_str(&self.speed_section());
        d.push_str(&self.budget_section());

        let _ = write!(
            d,
            "## Kernel path (BPF_PROG_TEST_RUN)\n\n\
             ```sh\n{} {}\n```\n\n\
             The data path is loaded (not attached) and each case is run through BPF_PROG_TEST_RUN \
             on CPU {}, pinned; the empty programs `bench_floor_xdp` (returns XDP_PASS) and \
             `bench_floor_tc` (TC_ACT_OK) of the same object are the floors. ns/packet is the median \
             of {} runs.\n\n\
             - **repeat mode**: one call per run with `repeat = {}`; ns/packet is the kernel's own \
             figure (its timer covers only the repeat loop; it reports whole ns, truncated).\n\
             - **single mode**: {} calls per run with `repeat = 1`, each with a 5-tuple never used \
             before; ns/packet is the mean of the kernel's per-call figures, which include the \
             timer's own clock reads, hence the separate one-call floor.\n\n{}\n",
            self.kernel_bin,
            k.args().join(" "),
            self.kernel.cpu,
            k.runs,
            k.repeat,
            k.single,
            self.kernel_table()
        );
        d.push_str(KERNEL_METHOD);
        d.push_str(
            "\nWhat the counters showed after each case (the bench stops if any differ):\n\n",
        );
        for case in &self.kernel.cases {
            let _ = writeln!(d, "- {}: {}", case.name, case.check);
        }

        d.push('\n');
        d.push_str(&scaling_report::section(&scaling_report::Inputs {
            sweep: self.scaling,
            plan: self.scaling_plan,
            control: self.control_scale,
            kernel_bin: &self.kernel_bin,
            llc: scaling_report::llc_size(),
        }));

        let _ = write!(
            d,
            "## In place: BPF stats under load\n\n\
             `run_time_ns / run_cnt` of canaryd's pinned programs (aya `ProgramInfo`), with BPF \
             run-time stats switched on (`BPF_ENABLE_STATS`, the same switch as \
             `kernel.bpf_stats_enabled`) only for one extra run of each load through the canary \
             path, after the timed rounds: the stats' two clock reads per program run would \
             otherwise slow the canary path in the comparison.\n\n\
             | load | canary_ingress ns/run | runs | canary_egress ns/run | runs | load's rate |\n\
             |---|---:|---:|---:|---:|---:|\n\
             | keep-alive ({} connections) | {:.0} | {} | {:.0} | {} | {} req/s |\n\
             | `Connection: close` | {:.0} | {} | {:.0} | {} | {} conn/s |\n\n\
             Ingress runs on every packet the host's veth receives (client → host), egress on \
             every packet it sends (host → client); a run is one packet.\n",
            e.keepalive.connections,
            ip.keepalive.0.ns_per_run,
            ip.keepalive.0.runs,
            ip.keepalive.1.ns_per_run,
            ip.keepalive.1.runs,
            thousands(ip.keepalive_rps),
            ip.close.0.ns_per_run,
            ip.close.0.runs,
            ip.close.1.ns_per_run,
            ip.close.1.runs,
            thousands(ip.close_cps),
        );

        let _ = write!(
            d,
            "\n## End to end\n\n\
             The paths: direct (the client connects to the stable backend); **empty XDP+TC** \
             (direct, with the empty floor programs attached where canary's go: XDP in driver mode \
             and a TC egress filter on the host's client-facing veth, held by \
             `kernel-bench --attach-floor eth0`), which shows what hooking the veth costs before \
             any program logic; canary (canaryd, weight {CANARY_PERCENT} %); **canary, signals \
             off** (the same canaryd with `[daemon] signals = false`, for the [Signals \
             budget](#signals-budget)); nftables DNAT with a weighted `numgen` map; HAProxy in tcp \
             mode; nginx stream.\n\n\
             Each path has its own copy of the standard topology (`xtask::topology`, client, host \
             and two backend namespaces, 198.18.0.0/15), so nftables' conntrack or canary's XDP \
             program never sees another path's packets. The backends are the same in every \
             path: nginx, one worker per CPU, answering `GET /` with its name (`stable` or `canary`, 7 \
             bytes). Weighted paths send {CANARY_PERCENT} % to the canary. The client connects to \
             198.18.0.1:80 (direct: to the stable backend, 198.18.1.2:8080), always through the host \
             namespace's routing.\n\n\
             {} round(s); in each, every path gets the three wrk runs below, one path after the \
             other, and each round starts at the next path. Figures are medians over rounds. CPU is \
             the whole machine's busy time from `/proc/stat` (client, host, backends; everything \
             but idle and iowait) during the run, divided by its requests.\n\n\
             ```sh\n\
             ip netns exec <client> wrk {}   # keep-alive\n\
             ip netns exec <client> wrk {}   # new connections\n\
             ip netns exec <client> wrk {}   # latency, one connection\n\
             ```\n\n\
             (URL `http://198.18.1.2:8080/` for direct; the bench starts wrk in the client \
             namespace itself, as `ip netns exec` would.)\n\n\
             {}\n\
             Over the rounds canary's data path sent {} new flows to stable and {} to canary \
             ({:.2} %; weight {CANARY_PERCENT} %), with {} rehashes (`canaryctl status`).\n\n\
             ![Each path's ratio to direct]({chart_file})\n\n",
            e.rounds,
            e.keepalive.shell_args(&url),
            e.close.shell_args(&url),
            e.latency.shell_args(&url),
            self.e2e_table(),
            self.split.stable,
            self.split.canary,
            self.split.canary_percent(),
            self.split.rehashes,
        );
        d.push_str("Every run:\n\n| round | path | keep-alive req/s | CPU µs/req | close conn/s | 1-conn p50 µs |\n|---:|---|---:|---:|---:|---:|\n");
        for round in 0..e.rounds {
            for p in self.e2e {
                if let (Some(ka), Some(cl), Some(lat)) = (
                    p.keepalive.get(round),
                    p.close.get(round),
                    p.latency.get(round),
                ) {
                    let _ = writeln!(
                        d,
                        "| {} | {} | {} | {:.2} | {} | {:.0} |",
                        round + 1,
                        p.kind.label(),
                        thousands(ka.rps),
                        ka.cpu_us_per_req,
                        thousands(cl.rps),
                        lat.p50_us
                    );
                }
            }
        }

        let _ = write!(
            d,
            "\n## Control plane\n\n\
             canaryd runs in the canary path's host namespace with the config below. {} trials \
             flip the weight between 0 % and 100 % with `canaryctl set-weight {} <0|100>`; a thread \
             polls the pinned SERVICES map meanwhile, and one new connection is opened as soon as \
             canaryctl returns: at 100 % the canary must serve it, at 0 % the stable backend.\n\n\
             | | median | max |\n|---|---:|---:|\n\
             | canaryctl set-weight, process start to exit | {:.2} ms | {:.2} ms |\n\
             | canaryctl start to the new weight in the pinned map | {:.2} ms | {:.2} ms |\n\
             | canaryctl exit to the first new connection's answer | {:.2} ms | {:.2} ms |\n\n\
             - The map held the new weight when canaryctl returned in {}/{} trials (canaryd writes it \
             before answering).\n\
             - The first new connection after canaryctl returned was served by the version the new \
             weight dictates in {}/{} trials: the kernel uses a weight from the next new flow on.\n\
             - canaryd resident set size: {:.1} MiB (VmRSS, after the load).\n\
             - canaryd CPU while idle: {:.3} % of one CPU over {} s (utime + stime from \
             `/proc/<pid>/stat`).\n\n",
            c.trials,
            paths::SERVICE,
            median(&c.ctl_ms),
            max(&c.ctl_ms),
            median(&c.map_ms),
            max(&c.map_ms),
            median(&c.first_conn_ms),
            max(&c.first_conn_ms),
            c.visible_at_return,
            c.trials,
            c.first_conn_ok,
            c.trials,
            c.rss_kib as f64 / 1024.0,
            c.idle_cpu_percent,
            c.idle_seconds,
        );

        d.push_str(&self.findings());
        d.push_str(&self.profile_section());

        let dir = std::path::Path::new("/tmp/canary-bench-<pid>-<path>");
        let _ = write!(
            d,
            "\n## Configs\n\n\
             Generated by the bench (`xtask/src/bench/paths.rs`), in a temporary directory per path.\n\n\
             canaryd (`canary.toml`; the *canary, signals off* path's differs only in \
             `signals = false`):\n\n```toml\n{}```\n\n\
             nftables, host namespace (`nft -f dnat.nft`):\n\n```\n{}```\n\n\
             HAProxy (`haproxy -db -f haproxy.cfg`):\n\n```\n{}```\n\n\
             nginx stream (`nginx -c stream.conf -p <dir> -e <dir>/stream.error.log`):\n\n```nginx\n{}```\n\n\
             Backend nginx, stable (the canary's differs only in address and body):\n\n```nginx\n{}```\n",
            paths::canaryd_config_example(),
            paths::nft_rules(),
            paths::haproxy_conf(),
            paths::nginx_stream_conf(dir),
            paths::nginx_backend_conf(dir, 0),
        );
        d
    }

    /// The "Signals budget" section: the table, how each line is measured,
    /// and the commands.
    fn budget_section(&self) -> String {
        let k = self.kernel_plan;
        let b = self.budget_plan;
        let url = Kind::Canary.url();
        let seen = self.signals;
        format!(
            "## Signals budget\n\n\
             Issue 9: the health signals the data path measures (requests, time to first byte, \
             status classes, resets, refusals, connect time; `canary-ebpf/src/signals.rs`) must not \
             make the fast path noticeably slower. Each line compares canary with signals against \
             canary without them, both measured in this run, as ratios so the budget holds on any \
             machine.\n\n{}\n\
             - **Kernel lines** (from [Kernel path](#kernel-path-bpf_prog_test_run)): growth = \
             (with − without) / without, each the case's ns above the empty program of its hook and \
             mode. *Without* is the same data path loaded with `LoadOptions {{ signals: false, .. }}` \
             (the read-only global `SIGNALS_ENABLED` set to 0, so the verifier removes the signals' \
             code); the two alternate run by run, or call by call. A line is met when both of its \
             packets are:\n\
             \x20 - *repeat mode* (established flow, egress reply translation): the steady state after \
             the first repeat, a client segment while its request is outstanding and a reply \
             segment after the response's first; the signals only test the entry there;\n\
             \x20 - *one call per packet* (a request starts, reply to a waiting request): the flow's \
             entry is rewritten before every call, so each call is a request's first segment \
             (count; the clock read when the latency sampler times it) or a response's first \
             segment (clock read, latency bucket, status line read and classified, counts). At \
             this call rate, far above the sampler's floor of 320 timed starts a second per CPU \
             and version, it times one start in 32, as it does on any CPU serving more than \
             about 10,000 requests a second of one version (one in 2 to 16 between 640 and \
             10,000; [docs/DATAPATH.md](DATAPATH.md#latency-sampling)). *A timed start* (the \
             sampler reset before each call so that it times it) is what each request pays \
             below the floor rate or with `latency_sampling = false`: shown for context, not a \
             budget line, since below the floor no CPU is busy. The response case is always \
             timed: a waiting request is set in the entry with a start time. These calls run with \
             cooler caches than repeat mode (syscalls between them), so both sides cost more above \
             the floor there.\n\
             - **End-to-end lines**, measured two ways after the main rounds. *The figure* is by \
             CPU accounting ({cpu_rounds} alternating round(s) of *{on}* and *{off}*, each load \
             {cpu_seconds} s, BPF run-time stats on): canary's two programs report their own run \
             time, so each run gives their ns per request with signals and without, beside the \
             whole machine's busy CPU time per request (from /proc/stat); with the machine \
             saturated (its lowest busy share is given), req/s is inversely proportional to CPU \
             time per request, so signals adding Δ ns to a request costing C ns change the ratio \
             to direct by the factor C / (C + Δ): the figure is *without* × (C / (C + Δ) − 1), \
             medians over the rounds (the line fails if any run's busy share is under 90 %). \
             Why not the ratio itself: two 3-second wrk runs of one path \
             differ by about 10 % on this machine, so a median of the triplets below has a \
             standard error several times the budget. *The check* is that ratio, measured \
             directly: the paths *{direct}*, *{on}* and *{off}* (the same canaryd \
             with `[daemon] signals = false`; their topologies are those of [End to \
             end](#end-to-end)), in {n} triplet(s) of short runs after the main rounds, not in the \
             rounds themselves: there the three runs one difference compares are spread over as much \
             as a whole round of all the paths, and this machine's load moves the ratios by more \
             than the budget in that time. In a \
             triplet the three paths' keep-alive runs go back to back, then their `Connection: \
             close` runs in the same order; the order rotates from one triplet to the next, so no \
             path is always first or last. Each triplet gives, for each load, *{on}*'s ratio to \
             direct minus *{off}*'s, from runs seconds apart; a line's figure is the median of \
             these differences over the triplets, with their range and the median's standard \
             error (every triplet is in the table below). A line is met when the accounting's \
             figure is within the budget and the triplets' median lies within two standard errors \
             of it (if it did not, the accounting would be missing a cost). *With* and *without* are each path's median ratio to direct \
             over the triplets, for context (their difference need not be the median \
             difference). Over the main rounds canary counted {} requests and {} responses ({} of \
             them 2xx), and canary with signals off counted none (read from their pinned SIGNALS \
             maps; the bench stops otherwise).\n\n\
             ```sh\n\
             {} {}   # kernel lines: signals on and off cases\n\
             ip netns exec <client> wrk {}   # keep-alive, each path of a triplet\n\
             ip netns exec <client> wrk {}   # new connections, each path of a triplet\n\
             ```\n\n\
             (URL `http://198.18.1.2:8080/` for direct.) Each triplet:\n\n{}\n",
            self.budget_table(),
            seen.on.requests,
            seen.on.responses,
            seen.on.http[e2e::HTTP_2XX],
            self.kernel_bin,
            k.args().join(" "),
            b.keepalive.shell_args(&url),
            b.close.shell_args(&url),
            self.triplets_table(),
            direct = Kind::Direct.label(),
            on = Kind::Canary.label(),
            off = Kind::CanaryNoSignals.label(),
            n = b.triplets,
            cpu_rounds = self.cpu_plan.rounds,
            cpu_seconds = self.cpu_plan.keepalive.seconds,
        )
    }

    /// Findings: what the figures say, with the reasons known from the code
    /// and the kernel.
    fn findings(&self) -> String {
        let direct = self.summary(Kind::Direct);
        let mut d = String::from("## Findings\n\n");
        let line = |kind: Kind| {
            let s = self.summary(kind);
            format!(
                "{}: {:.2}× direct keep-alive req/s, {:.2}× new conn/s, {:+.2} µs CPU/request, {:+.0} µs p50",
                kind.label(),
                s.rps / direct.rps,
                s.conns_per_s / direct.conns_per_s,
                s.cpu_us_per_req - direct.cpu_us_per_req,
                s.p50_us - direct.p50_us
            )
        };
        let _ = writeln!(d, "Headline ratios of this run:\n");
        // Every path but the baseline itself.
        for kind in Kind::ALL.into_iter().filter(|k| *k != Kind::Direct) {
            let _ = writeln!(d, "- {}", line(kind));
        }
        let _ = write!(d, "{}", self.hook_finding());
        let canary = self.summary(Kind::Canary);
        let nft = self.summary(Kind::Nftables);
        let haproxy = self.summary(Kind::Haproxy);
        let _ = writeln!(
            d,
            "- canary against nftables: {:.2}× its new conn/s; against HAProxy: {:.2}× its keep-alive req/s and {:.2}× its new conn/s.\n",
            canary.conns_per_s / nft.conns_per_s,
            canary.rps / haproxy.rps,
            canary.conns_per_s / haproxy.conns_per_s
        );
        let empty = self.summary(Kind::EmptyPrograms);
        let ip = self.in_place;
        let _ = write!(
            d,
            "Split of canary's overhead: of its {:+.2} µs CPU per keep-alive request over direct, \
             the empty programs alone account for {:+.2} µs; in new connections/s the empty \
             programs reach {:.3}× direct and canary {:.3}×. In place, canary_ingress took {:.0} ns \
             per packet under keep-alive load against {:.0} ns for an established packet in \
             BPF_PROG_TEST_RUN, and canary_egress {:.0} ns against {:.0} ns (why they differ: \
             [Data path speed](#data-path-speed)).\n\n",
            canary.cpu_us_per_req - direct.cpu_us_per_req,
            empty.cpu_us_per_req - direct.cpu_us_per_req,
            empty.conns_per_s / direct.conns_per_s,
            canary.conns_per_s / direct.conns_per_s,
            ip.keepalive.0.ns_per_run,
            self.kernel_ns("established"),
            ip.keepalive.1.ns_per_run,
            self.kernel_ns("egress"),
        );
        let not_service = self.kernel_ns("not_service") - self.kernel_ns("floor_xdp");
        let _ = write!(
            d,
            "{}",
            findings_text(&self.xdp_mode.to_string(), not_service)
        );
        d
    }
}

impl Report<'_> {
    /// The ingress hook on the bench's veth: canary with `hook = "tc"`
    /// against canary at XDP, end to end and each above its own floor, and
    /// in BPF_PROG_TEST_RUN.
    fn hook_finding(&self) -> String {
        let (xdp, tc) = (self.summary(Kind::Canary), self.summary(Kind::CanaryTc));
        let (empty_xdp, empty_tc) = (
            self.summary(Kind::EmptyPrograms),
            self.summary(Kind::EmptyTc),
        );
        let est_xdp = self.kernel_ns("established") - self.kernel_ns("floor_xdp");
        let est_tc = self.kernel_ns("established_tc") - self.kernel_ns("floor_tc");
        format!(
            "- Ingress hook on the veth: {tc_label} reaches {:.3}× {xdp_label}'s keep-alive req/s \
             and {:.3}× its new conn/s; against its own floor ({empty_tc_label}) {:.3}× and \
             {:.3}×, where {xdp_label} reaches {:.3}× and {:.3}× of {empty_xdp_label}; the floors \
             themselves: {empty_tc_label} {:.3}× {empty_xdp_label}'s keep-alive req/s, {:.3}× its \
             new conn/s. In BPF_PROG_TEST_RUN an established packet costs {est_tc:.0} ns above \
             the empty TC program at TC ingress and {est_xdp:.0} ns above the empty XDP program \
             at XDP.\n",
            tc.rps / xdp.rps,
            tc.conns_per_s / xdp.conns_per_s,
            tc.rps / empty_tc.rps,
            tc.conns_per_s / empty_tc.conns_per_s,
            xdp.rps / empty_xdp.rps,
            xdp.conns_per_s / empty_xdp.conns_per_s,
            empty_tc.rps / empty_xdp.rps,
            empty_tc.conns_per_s / empty_xdp.conns_per_s,
            tc_label = Kind::CanaryTc.label(),
            xdp_label = Kind::Canary.label(),
            empty_tc_label = Kind::EmptyTc.label(),
            empty_xdp_label = Kind::EmptyPrograms.label(),
        )
    }
}

/// Method notes for the kernel cases.
const KERNEL_METHOD: &str = "\
How each case measures what its name says. BPF_PROG_TEST_RUN with `repeat` runs the program on the \
same buffer again and again, so a program that rewrites the packet sees its own output on the next \
repeat; each case is built so every repeat takes the same path, and its counters prove it:

- **non-service packet** (SYN) and **non-service TCP segment**: TCP to the VIP address on a port \
with no service. The SYN is one SERVICES miss (a SYN may decide, so it looks up the service \
first); the segment (ACK, PSH) first misses in FLOWS, where an established segment would find \
its entry, then in SERVICES. Every repeat is counted `pass_not_service`.
- **established flow**: the service's stable and canary backend is the VIP itself (198.18.0.1:80; \
`ServiceSpec::check` allows it, canaryd's config check does not), and the flow's entry is written \
beforehand with `established = 1`. The rewrite (address, port, both checksums, incrementally) then \
writes the values it read, so the packet stays the same and every repeat follows the entry: all \
counted `translated`, no new flow, no rehash, and the output frame equals the input. The packet \
carries the client's request (`GET / HTTP/1.1`): with signals on, the first repeat starts a \
request (clock read, counted) and every later one finds it still waiting, so the figure is the \
steady state of a client segment while its request is outstanding, where the signals only test \
the entry; the signals show exactly 1 request.
- **established flow (ingress at TC)**: the same case through `canary_ingress_tc`, the same \
ingress logic at TC ingress (`hook = \"tc\"`), whose rewrite goes through the kernel's checksum \
helpers instead of incremental edits in place; compared with the empty TC program.
- **signals on / signals off**: *off* is the same case on a second copy of the data path loaded \
with `LoadOptions { signals: false, .. }` (the read-only global `SIGNALS_ENABLED` = 0, so the \
verifier removes the signals' code); on and off alternate run by run (call by call in single \
mode), so a change in the machine's load weighs on both. The off copy's signals stay all zero.
- **new flow, table empty (UDP, entry stale)**: a UDP service loaded with a 1 ns idle timeout. After \
the first repeat the flow's entry exists but is stale on every later one, so each repeat takes the \
whole new-flow path (hash, weight, backend, flow-table insert, lookup): `new_flows` equals the \
number of repeats. The insert replaces the flow's own entry, so the LRU never evicts here.
- **egress reply translation**: a reply from the backend (= the VIP, as above) on the live flow, \
`HTTP/1.1 200 OK` and the body: owner lookup, flow lookup, source rewrite; all repeats counted \
egress `translated`, output equals input (the real-backend case below has a rewrite that changes \
the packet). A request is set \
waiting in the entry beforehand, so with signals on the first repeat is its response (latency, \
status class: the signals show 1 response, 2xx) and every later one finds none waiting: the \
figure is the steady state of a reply segment after the response's first, where the signals only \
test the entry.
- **new flow, table empty (TCP SYN)** and **new flow, table at capacity**: a new flow's insert \
happens once per 5-tuple, so these use single mode with a fresh client address and port per call \
(198.18.128.0/17) and real backends. A new decision looks up both tables and goes into HALF_OPEN \
(it moves to FLOWS when the handshake completes, which these calls never reach). Empty: the \
half-open entry is deleted from userspace after each call, outside the timed part. At capacity: \
the half-open table (16,384 entries beside a 65,536-entry flow table) is first filled with other \
flows from userspace, so every insert must evict; afterwards the table is still full and the \
prefilled flows are gone. The kernel's LRU evicts in batches, so most calls are cheap and some pay \
for a batch: the mean (reported) carries that cost, the p50 does not.
- **established flow, a request starts** and **egress reply to a waiting request**: what the \
signals cost on the packets that do their work, once per request. A repeat cannot reset the \
flow's state, so these use single mode on the live flow above: before each call the entry is \
rewritten from userspace (outside the timed part) with no request waiting (ingress: every call \
starts one and counts it; the latency sampler, at this call rate, times one start in 32, and the \
case's check names the rate it reached) or with one started 100 µs before (egress: every call is \
its response, clock read, latency bucket, status line read in place and classified, \
counts). The signals show one request, or one 2xx response with a latency, per call. They are \
compared with the one-call floors of their hook (`floor: empty TC program, one call per packet` \
for egress).
- **established flow, a timed request starts**: the ingress case above with the sampler also \
reset before each call to a window just begun, so every call reads the clock: what a request \
start costs below the sampler's floor rate or with `latency_sampling = false`.
- **established flow, real backend** and **egress reply translation, real backend**: the same \
packets as the repeat cases on a flow to a real backend (198.18.1.2:8080), one call per packet, \
so the rewrite really changes address, port and checksums (a repeat would see its own output). \
A request is waiting when the client's segment arrives and none when the reply does, so the \
signals only test the entry, as in repeat mode.
";

/// `not_service`: the non-service case's ns above its floor.
fn findings_text(xdp_mode: &str, not_service: f64) -> String {
    format!(
        "Reasons: the veth mechanism from the kernel's code, the rest from the \
         [Profile](#profile) of this run:\n\n\
         - **XDP on veth ({xdp_mode} mode here).** With an XDP program attached, a veth receives \
         in NAPI, and every skb its peer sends that is cloned (TCP sends clones of its segments), \
         shared, paged or short of 256 bytes of headroom is first copied into a fresh page-pool \
         buffer so the program may write it (`veth_convert_skb_to_xdp_buff`); the peer also loses \
         software GSO while the program is attached. The direct path pays none of this. The \
         **empty XDP+TC** path measures exactly that cost with programs that do nothing; the \
         difference between it and canary is the programs' own work, which the in-place figures \
         show per packet. On a physical NIC in driver mode the frame comes from the driver's ring \
         and this copy does not exist.\n\
         - **Established packets** are one FLOWS lookup (40-byte key: jhash over all of it, \
         the bucket walk, the key compare), the per-CPU counters and the incremental rewrite; \
         the profile shows the hash lookup beside the program's own instructions as the two \
         large parts. Parsing plus one SERVICES lookup (the non-service SYN) costs \
         {not_service:+.0} ns over the floor here; a TCP segment that is not a SYN looks for its \
         flow first, so a non-service one pays that miss too.\n\
         - **New flows** add the hash, a BACKENDS lookup and the HALF_OPEN insert; at capacity \
         the insert also evicts, in batches from the LRU's lists (see the `new_flow_full` \
         profile). `BPF_F_NO_COMMON_LRU` (a list per CPU) was measured and not kept: on this \
         2-CPU machine its full/empty ratio was within run-to-run noise of the common LRU's, \
         and it splits the table's capacity by CPU (a fill from one CPU got 8,192 of 16,384 \
         entries), so a host whose new flows arrive on few CPUs would evict early.\n\
         - **Egress** does two hash lookups (BACKEND_OWNERS: a reply does not carry the VIP \
         its flow is keyed by; then FLOWS), where established ingress does one, and rewrites \
         through three helper calls (one store of the IPv4 header checksum, addresses and \
         ports, two `bpf_l4_csum_replace`): only the helpers know the skb's checksum state \
         (CHECKSUM_PARTIAL holds the pseudo-header sum only), and a direct packet write would \
         make the kernel copy the header of every cloned skb the program sees (the verifier's \
         unclone prologue), all of a local TCP sender's packets included, rewritten or not. \
         A reverse flow table keyed by the reply's tuple would make egress one lookup at the \
         price of a second insert per new flow and twice the flow memory; not done.\n\
         - **nftables** pays conntrack on every packet (and a conntrack entry per connection); \
         **HAProxy and nginx** terminate the client's TCP connection and open their own to the \
         backend, so every request crosses userspace twice and every new connection is two.\n"
    )
}

/// A table of goals, their figures and whether this run met them.
fn goals_table(what: &str, goals: Vec<Target>) -> String {
    let mut t = format!("| {what} | goal | this run | result |\n|---|---|---|---|\n");
    for g in goals {
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} |",
            g.what,
            g.goal,
            g.measured,
            if g.met {
                format!("met ({})", g.by)
            } else {
                format!("**not met**: {}", g.by)
            }
        );
    }
    t
}

/// How far `v` is under the ceiling `goal`, or over it.
fn margin(v: f64, goal: f64, unit: &str, precision: usize) -> String {
    if v <= goal {
        format!("{:.precision$} {unit} to spare", goal - v)
    } else {
        format!("missed by {:.precision$} {unit}", v - goal)
    }
}

fn ratio_by(r: f64, goal: f64) -> String {
    let d = (r - goal).abs();
    let by = if d < 0.0005 {
        format!("less than 0.001 (×{r:.4})")
    } else {
        format!("{d:.3}")
    };
    if r >= goal {
        format!("{by} above")
    } else {
        format!("missed by {by}")
    }
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NAN, f64::max)
}

/// 12345.6 → "12,346".
pub fn thousands(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let digits = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if v < 0.0 { format!("-{out}") } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1234.0), "1,234");
        assert_eq!(thousands(1234567.0), "1,234,567");
        assert_eq!(thousands(f64::NAN), "–");
    }
}
