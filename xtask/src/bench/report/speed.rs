//! Issue 13's data path speed targets and the profile, for
//! docs/BENCHMARKS.md: every figure from this run.

use std::fmt::Write as _;

use super::{Report, Target, goals_table, ratio_by};
use crate::bench::{kernel::PROFILED, paths::Kind, profile::Profile};

/// Symbols listed per kernel-bench profile, and under load.
const TOP_CASE: usize = 8;
const TOP_LOAD: usize = 14;

impl Report<'_> {
    /// ns above the floor of the case's own hook and mode.
    fn above_floor(&self, id: &str) -> f64 {
        let Some(c) = self.kernel.case(id) else {
            return f64::NAN;
        };
        let floor = self.kernel.floor_of(c).map_or(f64::NAN, |f| f.median_ns);
        c.median_ns - floor
    }

    pub(super) fn speed_targets(&self) -> Vec<Target> {
        let ratio_at_most =
            |what: &'static str, goal: f64, r: f64, goal_text: String, measured: String| Target {
                what,
                goal: goal_text,
                measured,
                met: r <= goal,
                by: if r <= goal {
                    format!("{:.2}× to spare", goal - r)
                } else {
                    format!("missed by {:.2}×", r - goal)
                },
            };
        let est = self.above_floor("established");
        let not_service = self.above_floor("not_service");
        let segment = self.above_floor("not_service_segment");
        let egress = self.above_floor("egress");
        let est_real = self.above_floor("established_real");
        let egress_real = self.above_floor("egress_real");
        let empty = self.above_floor("new_flow_empty");
        let full = self.above_floor("new_flow_full");
        let canary = self.summary(Kind::Canary);
        let floor_path = self.summary(Kind::EmptyPrograms);
        let nft = self.summary(Kind::Nftables);
        let rps = canary.rps / floor_path.rps;
        let cps = canary.conns_per_s / floor_path.conns_per_s;
        let at_least = |what: &'static str, r: f64, goal: f64, measured: String| Target {
            what,
            goal: format!("≥ {goal:.2}× the empty XDP+TC path"),
            measured,
            met: r >= goal,
            by: ratio_by(r, goal),
        };
        vec![
            ratio_at_most(
                "established ingress, above the floor, signals on",
                1.8,
                est / not_service,
                "≤ 1.8× the non-service packet's (a SYN: parse plus one lookup)".into(),
                format!(
                    "{:.2}× (+{est:.0} vs +{not_service:.0} ns, repeat mode); a non-service segment \
                     that is not a SYN: +{segment:.0} ns (a FLOWS miss first)",
                    est / not_service
                ),
            ),
            ratio_at_most(
                "egress reply translation, above its floor",
                1.0,
                egress_real / est_real,
                "≤ 1.0× the established ingress packet's".into(),
                format!(
                    "{:.2}× with real backends, one call per packet (+{egress_real:.0} vs \
                     +{est_real:.0} ns); repeat mode, backend = VIP: {:.2}× (+{egress:.0} vs \
                     +{est:.0} ns)",
                    egress_real / est_real,
                    egress / est
                ),
            ),
            ratio_at_most(
                "new flow at a full table (mean, LRU evicting), above the one-call floor",
                1.3,
                full / empty,
                "≤ 1.3× the same with an empty table".into(),
                format!("{:.2}× (+{full:.0} vs +{empty:.0} ns)", full / empty),
            ),
            at_least(
                "keep-alive requests/s",
                rps,
                0.98,
                format!(
                    "{rps:.3}× ({} vs {} req/s)",
                    super::thousands(canary.rps),
                    super::thousands(floor_path.rps)
                ),
            ),
            at_least(
                "new connections/s",
                cps,
                0.98,
                format!(
                    "{cps:.3}× ({} vs {} conn/s)",
                    super::thousands(canary.conns_per_s),
                    super::thousands(floor_path.conns_per_s)
                ),
            ),
            Target {
                what: "new connections/s against nftables DNAT",
                goal: "ahead".into(),
                measured: format!(
                    "{:.3}× nftables ({} vs {} conn/s)",
                    canary.conns_per_s / nft.conns_per_s,
                    super::thousands(canary.conns_per_s),
                    super::thousands(nft.conns_per_s)
                ),
                met: canary.conns_per_s > nft.conns_per_s,
                by: format!(
                    "{:+.1} %",
                    (canary.conns_per_s / nft.conns_per_s - 1.0) * 100.0
                ),
            },
        ]
    }

    pub(super) fn speed_section(&self) -> String {
        let ip = self.in_place;
        let mut d = String::new();
        let _ = write!(
            d,
            "## Data path speed\n\n\
             Issue 13's targets, each a ratio of two cases of this run. Kernel figures are from \
             [Kernel path](#kernel-path-bpf_prog_test_run) (\"above the floor\": a case's median \
             minus its empty program's, same hook and mode); end-to-end figures are medians over \
             the rounds of [End to end](#end-to-end); why each comes out as it does: \
             [Profile](#profile).\n\n{}\n",
            goals_table("target", self.speed_targets())
        );
        let _ = write!(
            d,
            "In place under the keep-alive load (BPF stats, [In place](#in-place-bpf-stats-under-load)): \
             canary_ingress {:.0} ns/run and canary_egress {:.0} ns/run, against {:.0} and {:.0} ns \
             for an established packet and a real-backend reply in BPF_PROG_TEST_RUN (one call per \
             packet, floors included: the kernel's per-run accounting includes its clock reads too). \
             The gap is what the harness does not have: under load the programs share two CPUs with \
             the client, the servers and the stack (see the load profile below: the programs' \
             symbols are a few percent of all samples), so their code, the flow entry and the \
             hash buckets are out of the caches more often, and ingress and egress of one flow \
             run on different CPUs and write the same entry.\n\n",
            ip.keepalive.0.ns_per_run,
            ip.keepalive.1.ns_per_run,
            self.kernel
                .case("established_real")
                .map_or(f64::NAN, |c| c.median_ns),
            self.kernel
                .case("egress_real")
                .map_or(f64::NAN, |c| c.median_ns),
        );
        d
    }

    pub(super) fn profile_section(&self) -> String {
        let mut d = String::from(
            "## Profile\n\n\
             Where the time goes, sampled with `perf` (`cpu-clock`: this virtual machine has no \
             hardware counters — `perf stat -e cycles` says `<not supported>` — and `bpftool prog \
             profile`, which would count cycles and instructions per run, cannot run here either: \
             Debian's bpftool answers `bpftool prog profile command is not supported. Please \
             build bpftool with clang >= 10.0.0`). The JIT's symbols \
             are on (`net.core.bpf_jit_kallsyms = 1`), so each BPF program shows under its name; \
             the kernel functions it calls (map lookups, helpers) show under theirs, and with \
             call chains (`-g`, the JIT keeps frame pointers) every sample in one of those is \
             the data path's time, while the harness's or the stack's clock reads are not. \
             Percentages are of the profiled process's samples (kernel-bench) or of all CPUs' (under load), \
             self time only.\n\n\
             ### Program sizes\n\n\
             | program | signals | verifier: instructions processed | loaded instructions | JIT code (bytes) |\n\
             |---|---|---:|---:|---:|\n",
        );
        let n = |v: Option<u64>| v.map_or("–".into(), |v| super::thousands(v as f64));
        for p in &self.kernel.programs {
            let _ = writeln!(
                d,
                "| `{}` | {} | {} | {} | {} |",
                p.name,
                if p.signals { "on" } else { "off" },
                n(p.verified_insns),
                n(p.xlated_insns),
                n(p.jited_bytes)
            );
        }
        d.push_str(
            "\nFrom kernel-bench's JSON (`programs`: the kernel's `bpf_prog_info` of each loaded \
             program). Signals off, the verifier removes their code (a read-only global), which \
             is the difference in loaded instructions.\n\n\
             ### kernel-bench cases, one at a time\n\n",
        );
        for (p, (_, why)) in self.kernel_profiles.iter().zip(PROFILED) {
            let _ = write!(
                d,
                "**{}**: {why}.\n\n```sh\n{}\n```\n\n{}\n",
                p.what,
                p.command,
                profile_tables(p, TOP_CASE)
            );
        }
        let lp = self.load_profile;
        let _ = write!(
            d,
            "### Under the keep-alive load\n\n\
             All CPUs sampled while one keep-alive run (the rounds' load) goes through the canary \
             path, BPF stats off:\n\n```sh\n{}\n```\n\n{}\n",
            lp.command,
            profile_tables(lp, TOP_LOAD)
        );
        d
    }
}

/// A profile's data path share, where its time goes (by category and by
/// function, attributed by call chain) and the whole profile's top
/// symbols for context.
fn profile_tables(p: &Profile, top: usize) -> String {
    let dp = &p.data_path;
    let mut t = format!(
        "The data path (samples whose call chain runs through one of canary's programs: the \
         program itself or a kernel function it called): {:.1} % of the samples ({} samples).\n\n\
         | where the data path's time goes | share |\n|---|---:|\n",
        dp.of_all_percent, dp.samples
    );
    for (c, pct) in p.categories() {
        let _ = writeln!(t, "| {c} | {pct:.1} % |");
    }
    t.push_str("\n| function the data path's samples landed in | share |\n|---|---:|\n");
    for s in dp.leaves.iter().take(top) {
        let _ = writeln!(t, "| `{}` | {:.1} % |", s.name, s.percent);
    }
    t.push_str("\n| all samples: symbol | self |\n|---|---:|\n");
    for s in p.symbols.iter().take(top) {
        let _ = writeln!(t, "| `{}` | {:.1} % |", s.name, s.percent);
    }
    t
}
