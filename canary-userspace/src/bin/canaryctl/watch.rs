//! `canaryctl watch SERVICE`: one screen, redrawn in place, of what the
//! service does now: weight, per-version requests/s, error rate, p50/p99
//! over the last refresh, and the rollout's phase and last decision.

use std::{
    io::{IsTerminal, Write},
    time::{Duration, Instant},
};

use canary_userspace::{
    api::{Client, ClientError, ServiceStatus},
    cli::canaryctl::WatchArgs,
    config::parse_duration,
    model::signals::VersionSignals,
};

pub fn run(client: &Client, args: &WatchArgs) -> Result<(), ClientError> {
    let every = parse_duration(&args.every).map_err(|e| ClientError::Protocol {
        path: "--every".into(),
        detail: e.to_string(),
    })?;
    let every = every.max(Duration::from_millis(100));
    let tty = std::io::stdout().is_terminal();
    let mut before: Option<(Instant, ServiceStatus)> = None;
    let mut n = 0;
    loop {
        let status = client.status()?;
        let Some(svc) = status.services.into_iter().find(|s| s.name == args.service) else {
            return Err(ClientError::Failed {
                code: canary_userspace::api::ErrorCode::UnknownService,
                message: format!("unknown service {:?}", args.service),
            });
        };
        let rollout = client.rollout_status(&args.service).ok();
        let now = Instant::now();
        let mut out = String::new();
        if tty {
            // Clear the screen and go home: redraw in place.
            out.push_str("\x1b[2J\x1b[H");
        }
        out.push_str(&format!(
            "{}  {}/{}  canary weight {:.2}\n",
            svc.name, svc.listen, svc.protocol, svc.weight
        ));
        out.push_str(&format!(
            "  {:<8} {:>10} {:>8} {:>10} {:>10}\n",
            "VERSION", "REQ/S", "ERRORS", "P50", "P99"
        ));
        for (name, v, old) in [
            (
                "stable",
                &svc.stable.signals,
                before.as_ref().map(|(_, b)| &b.stable.signals),
            ),
            (
                "canary",
                &svc.canary.signals,
                before.as_ref().map(|(_, b)| &b.canary.signals),
            ),
        ] {
            let (d, secs) = match (old, &before) {
                (Some(o), Some((t, _))) => (v.since(o), now.duration_since(*t).as_secs_f64()),
                _ => (VersionSignals::default(), 0.0),
            };
            out.push_str(&format!(
                "  {:<8} {:>10} {:>8} {:>10} {:>10}\n",
                name,
                if secs > 0.0 {
                    format!("{:.1}", d.requests as f64 / secs)
                } else {
                    "-".into()
                },
                d.error_rate()
                    .map_or("-".into(), |r| format!("{:.2}%", r * 100.0)),
                ms(d.latency.quantile(0.5)),
                ms(d.latency.quantile(0.99)),
            ));
        }
        match &rollout {
            Some(r) => {
                out.push_str(&format!(
                    "  rollout {:?} ({}), step {}/{}, observed canary share {}\n",
                    r.phase,
                    r.mode,
                    r.step + 1,
                    r.steps.len(),
                    r.observed_canary_share
                        .map_or("-".into(), |s| format!("{:.1}%", s * 100.0))
                ));
                if let Some(last) = r.history.last() {
                    out.push_str(&format!(
                        "  last decision (look {}): {}\n",
                        last.look, last.reason
                    ));
                }
            }
            None => out.push_str("  no rollout\n"),
        }
        print!("{out}");
        let _ = std::io::stdout().flush();
        before = Some((now, svc));
        n += 1;
        if args.count.is_some_and(|c| n >= c) {
            return Ok(());
        }
        std::thread::sleep(every);
    }
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.1}ms", d.as_secs_f64() * 1e3))
}
