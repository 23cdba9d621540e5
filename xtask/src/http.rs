//! A plain HTTP/1.0 GET from inside a test namespace: enough for tests and
//! the bench to read /metrics, Prometheus' API or a backend's answer.

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
    let mut stream = ns.enter(|| TcpStream::connect_timeout(&addr, timeout))??;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("HTTP answer without a head")?;
    ensure!(
        head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
        "GET {path} at {addr}: {head}"
    );
    Ok(body.to_owned())
}
