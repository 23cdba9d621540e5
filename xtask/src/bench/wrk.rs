//! The one load generator every path gets: wrk, run in the client namespace,
//! bounded in time, its summary parsed.

use std::{process::Command, time::Duration};

use anyhow::{Context, Result, bail, ensure};
use xtask::topology::Netns;

use super::proc::{CpuTicks, run_in};

/// One wrk invocation.
#[derive(Clone, Debug)]
pub struct Load {
    pub threads: u32,
    pub connections: u32,
    pub seconds: u32,
    /// Send `Connection: close`: one request per connection.
    pub close: bool,
}

impl Load {
    /// The same load for `seconds`.
    pub fn lasting(&self, seconds: u32) -> Load {
        Load {
            seconds,
            ..self.clone()
        }
    }

    /// wrk's arguments.
    pub fn args(&self, url: &str) -> Vec<String> {
        let mut a = vec![
            format!("-t{}", self.threads),
            format!("-c{}", self.connections),
            format!("-d{}s", self.seconds),
            "--timeout".into(),
            "2s".into(),
            "--latency".into(),
        ];
        if self.close {
            a.extend(["-H".into(), "Connection: close".into()]);
        }
        a.push(url.into());
        a
    }

    /// The arguments as typed in a shell (and written in docs/BENCHMARKS.md).
    pub fn shell_args(&self, url: &str) -> String {
        self.args(url)
            .join(" ")
            .replace("Connection: close", "'Connection: close'")
    }
}

/// What one run measured.
#[derive(Clone, Debug, Default)]
pub struct Measured {
    pub requests: u64,
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Socket errors (connect, read, write, timeout) plus non-2xx answers.
    pub errors: u64,
    /// Busy CPU time of the whole machine per request, in µs.
    pub cpu_us_per_req: f64,
}

/// Runs wrk in `client` against `url`, with the machine's CPU time around it.
pub fn run(client: &Netns, load: &Load, url: &str) -> Result<Measured> {
    let mut cmd = Command::new("wrk");
    cmd.args(load.args(url));
    let before = CpuTicks::now()?;
    let out = run_in(
        client,
        cmd,
        Duration::from_secs(u64::from(load.seconds) + 20),
    )?;
    let after = CpuTicks::now()?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "wrk {} failed ({}): {}{}",
        load.shell_args(url),
        out.status,
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    let mut m = parse(&text).with_context(|| format!("reading wrk's output:\n{text}"))?;
    ensure!(m.requests > 0, "wrk completed no request:\n{text}");
    m.cpu_us_per_req = after.busy_us_since(&before) / m.requests as f64;
    Ok(m)
}

/// Reads wrk's summary (with `--latency`).
pub fn parse(text: &str) -> Result<Measured> {
    let mut m = Measured::default();
    let mut seen = (false, false, false, false);
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", v] => {
                m.p50_us = latency_us(v)?;
                seen.0 = true;
            }
            ["99%", v] => {
                m.p99_us = latency_us(v)?;
                seen.1 = true;
            }
            [n, "requests", "in", ..] => {
                m.requests = n.parse()?;
                seen.2 = true;
            }
            ["Requests/sec:", v] => {
                m.rps = v.parse()?;
                seen.3 = true;
            }
            ["Socket", "errors:", rest @ ..] => {
                // connect 0, read 0, write 0, timeout 0
                for pair in rest.chunks(2) {
                    if let [_, n] = pair {
                        m.errors += n.trim_end_matches(',').parse::<u64>()?;
                    }
                }
            }
            ["Non-2xx", "or", "3xx", "responses:", n] => m.errors += n.parse::<u64>()?,
            _ => {}
        }
    }
    if seen != (true, true, true, true) {
        bail!("no latency distribution, request count or Requests/sec line");
    }
    Ok(m)
}

/// "311.00us", "1.12ms", "2.00s" → µs.
fn latency_us(v: &str) -> Result<f64> {
    let (number, scale) = if let Some(n) = v.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1e6)
    } else {
        bail!("latency {v:?} has no unit");
    };
    Ok(number.parse::<f64>()? * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "Running 5s test @ http://198.18.1.2:8080/
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   351.12us  205.01us   6.01ms   89.69%
    Req/Sec    45.31k     3.21k   51.63k    72.00%
  Latency Distribution
     50%  311.00us
     75%  398.00us
     90%  519.00us
     99%    1.12ms
  451032 requests in 5.00s, 71.40MB read
  Socket errors: connect 0, read 3, write 0, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec:  90186.76
Transfer/sec:     14.28MB
";

    #[test]
    fn parses_summary() {
        let m = parse(OUTPUT).unwrap();
        assert_eq!(m.requests, 451_032);
        assert_eq!(m.rps, 90186.76);
        assert_eq!(m.p50_us, 311.0);
        assert_eq!(m.p99_us, 1120.0);
        assert_eq!(m.errors, 9);
    }

    #[test]
    fn rejects_truncated_output() {
        assert!(parse("Running 5s test @ http://x/\n").is_err());
    }

    #[test]
    fn args_close() {
        let l = Load {
            threads: 2,
            connections: 32,
            seconds: 5,
            close: true,
        };
        assert_eq!(
            l.shell_args("http://198.18.0.1/"),
            "-t2 -c32 -d5s --timeout 2s --latency -H 'Connection: close' http://198.18.0.1/"
        );
    }
}
