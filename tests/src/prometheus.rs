//! A real Prometheus server (Debian's package) in a test namespace, and
//! promtool's metrics lint.

use std::{
    collections::BTreeMap,
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
use serde::Deserialize;
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
        Server::start_scraping_at(ns, dir, LISTEN.parse()?, jobs)
    }

    /// `start_scraping`, listening on `listen` rather than loopback: where
    /// canaryds in other namespaces can query it (a fleet's leader, on
    /// whichever host it is).
    pub fn start_scraping_at(
        ns: &'a Netns,
        dir: &Path,
        listen: SocketAddr,
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
            .arg(format!("--web.listen-address={listen}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting prometheus (cargo xtask setup installs it)")?;
        let server = Server { child, listen, ns };
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

/// One series of an instant vector: its labels and its value as Prometheus
/// wrote it (a number, `NaN` or `+Inf`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Series {
    pub metric: BTreeMap<String, String>,
    pub value: (f64, String),
}

/// `/api/v1/query`'s answer, as far as `Server::query_series` needs it.
#[derive(Debug, Deserialize)]
struct VectorAnswer {
    status: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    data: Option<VectorData>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum VectorData {
    Vector(Vec<Series>),
    Scalar((f64, String)),
    Matrix(serde::de::IgnoredAny),
    String(serde::de::IgnoredAny),
}

/// `text` percent-encoded for a URL's query string (RFC 3986 unreserved
/// characters kept as they are).
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Server<'_> {
    /// An instant query whose answer may hold any number of series: every
    /// series (a scalar answer is one series without labels). An error when
    /// Prometheus refuses the query (a parse error, for one).
    pub fn query_series(&self, promql: &str) -> Result<Vec<Series>> {
        let path = format!("/api/v1/query?query={}", url_encode(promql));
        let body =
            http_get(self.ns, self.listen, &path).with_context(|| format!("query {promql}"))?;
        let answer: VectorAnswer =
            serde_json::from_str(&body).with_context(|| format!("query {promql}: {body}"))?;
        if answer.status != "success" {
            bail!(
                "query {promql}: Prometheus answered {}: {}",
                answer.status,
                answer.error.unwrap_or_default()
            );
        }
        match answer.data {
            Some(VectorData::Vector(series)) => Ok(series),
            Some(VectorData::Scalar(value)) => Ok(vec![Series {
                metric: BTreeMap::new(),
                value,
            }]),
            Some(VectorData::Matrix(_) | VectorData::String(_)) => {
                bail!("query {promql}: not an instant vector or scalar")
            }
            None => bail!("query {promql}: a success without data"),
        }
    }
}

impl Drop for Server<'_> {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
