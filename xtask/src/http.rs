//! A plain HTTP/1.0 GET or POST from inside a test namespace: enough for
//! tests and the bench to read /metrics, Prometheus' API, a backend's
//! answer or etcd's JSON gateway.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use anyhow::{Context, Result, ensure};

use crate::topology::Netns;

/// `GET path` to `addr` from inside `ns`, each step bounded by `timeout`;
/// the body of a 200 answer.
pub fn get(ns: &Netns, addr: SocketAddr, path: &str, timeout: Duration) -> Result<String> {
    exchange(
        ns,
        addr,
        &format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n"),
        path,
        timeout,
    )
}

/// `POST path` with a JSON `body` to `addr` from inside `ns`, each step
/// bounded by `timeout`; the body of a 200 answer.
pub fn post_json(
    ns: &Netns,
    addr: SocketAddr,
    path: &str,
    body: &str,
    timeout: Duration,
) -> Result<String> {
    exchange(
        ns,
        addr,
        &format!(
            "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        ),
        path,
        timeout,
    )
}

/// Sends `request` whole and reads the answer to the server's close
/// (HTTP/1.0: one request per connection).
fn exchange(
    ns: &Netns,
    addr: SocketAddr,
    request: &str,
    path: &str,
    timeout: Duration,
) -> Result<String> {
    let mut stream = ns.enter(|| TcpStream::connect_timeout(&addr, timeout))??;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(request.as_bytes())?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("HTTP answer without a head")?;
    ensure!(
        head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
        "{path} at {addr}: {head}"
    );
    Ok(body.to_owned())
}
