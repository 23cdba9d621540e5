//! A real Prometheus server (Debian's package) in a test namespace, and
//! promtool's metrics lint.

use std::{
    fs,
    io::Write,
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use canary_userspace::controller::prometheus;
use xtask::topology::Netns;

use crate::HTTP_TIMEOUT;

/// `GET path` from inside `ns`; the body of a 200 answer.
fn http_get(ns: &Netns, addr: SocketAddr, path: &str) -> Result<String> {
    xtask::http::get(ns, addr, path, HTTP_TIMEOUT)
}

/// Where the server listens, inside the test's namespace.
const LISTEN: &str = "127.0.0.1:9090";
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// `promtool check metrics` over an exposition; returns its complaints
/// (empty when it has none).
pub fn promtool_check_metrics(exposition: &str) -> Result<String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running promtool (cargo xtask setup installs the prometheus package)")?;
    child
        .stdin
        .take()
        .context("promtool stdin")?
        .write_all(exposition.as_bytes())?;
    let out = child.wait_with_output()?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(if out.status.success() {
        String::new()
    } else {
        said
    })
}

/// A Prometheus server scraping its targets every second; killed on drop.
pub struct Server<'a> {
    child: Child,
    pub listen: SocketAddr,
    ns: &'a Netns,
}

impl<'a> Server<'a> {
    pub fn start(ns: &'a Netns, dir: &Path, target: SocketAddr) -> Result<Server<'a>> {
        Server::start_scraping(ns, dir, &[("canaryd", target)])
    }

    /// A server scraping each (job, target) every second.
    pub fn start_scraping(
        ns: &'a Netns,
        dir: &Path,
        jobs: &[(&str, SocketAddr)],
    ) -> Result<Server<'a>> {
        let config = dir.join("prometheus.yml");
        let mut yaml = String::from(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n",
        );
        for (job, target) in jobs {
            yaml.push_str(&format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n"
            ));
        }
        fs::write(&config, yaml)?;
        let data = dir.join("prometheus-data");
        let log = fs::File::create(dir.join("prometheus.log"))?;
        let child = Command::new("ip")
            .args(["netns", "exec", ns.name(), "prometheus"])
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address={LISTEN}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting prometheus (cargo xtask setup installs it)")?;
        let server = Server {
            child,
            listen: LISTEN.parse()?,
            ns,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        while http_get(ns, server.listen, "/-/ready").is_err() {
            if Instant::now() > deadline {
                bail!(
                    "prometheus in {} not ready within {READY_TIMEOUT:?}:\n{}",
                    ns.name(),
                    fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
                );
            }
            thread::sleep(Duration::from_millis(200));
        }
        Ok(server)
    }

    /// Instant query through the HTTP API; the value of a single-sample
    /// answer, None when the answer has no samples yet.
    /// An instant query through the library's PromQL client (the one the
    /// rollout gates use), from inside the server's namespace.
    pub fn query(&self, promql: &str) -> Result<Option<f64>> {
        let base = format!("http://{}", self.listen);
        self.ns
            .enter(|| prometheus::query(&base, promql, prometheus::QUERY_TIMEOUT))?
            .map_err(|e| anyhow::anyhow!("query {promql}: {e}"))
    }
}

impl Drop for Server<'_> {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
