//! A minimal HTTP/1.x server for `GET /metrics`: the only endpoint, so no
//! HTTP framework; requests are bounded in size and time.

use prometheus::Registry;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    time::{Duration, timeout},
};

use crate::{
    accept::{self, Gate},
    served::Served,
};

const MAX_HEADER_BYTES: usize = 8 * 1024;
/// The whole request head must arrive within this long.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// A client that does not read the response is dropped after this long:
/// it must not hold a descriptor and a connection slot for ever.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `GET /metrics`, at most `gate.limit` connections at once; more
/// are closed at once and counted (`canary_listener_rejected_total`).
pub async fn serve(listener: TcpListener, served: Served, registry: Registry, gate: Gate) {
    accept::serve(listener, gate, move |stream| {
        answer(stream, served.clone(), registry.clone())
    })
    .await
}

async fn answer(mut stream: TcpStream, served: Served, registry: Registry) {
    let Ok(Some(head)) = timeout(READ_TIMEOUT, read_head(&mut stream)).await else {
        return;
    };
    let mut parts = head.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, content_type, body) = match (method, target.split('?').next()) {
        ("GET", Some("/metrics")) => {
            // From the observer: a scrape never waits on the state's owner.
            let status = served.observer.status();
            match status.map_err(|e| e.to_string()).and_then(|s| {
                canary_userspace::api::metrics::render(&s, &served.observer.rollouts(), &registry)
                    .map_err(|e| e.to_string())
            }) {
                Ok(text) => ("200 OK", "text/plain; version=0.0.4; charset=utf-8", text),
                Err(e) => ("500 Internal Server Error", "text/plain", format!("{e}\n")),
            }
        }
        ("GET", _) => (
            "404 Not Found",
            "text/plain",
            "only /metrics is served here\n".into(),
        ),
        _ => ("405 Method Not Allowed", "text/plain", "GET only\n".into()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = timeout(WRITE_TIMEOUT, stream.write_all(response.as_bytes())).await;
}

/// Reads up to the end of the request head; None when the client sends an
/// oversized or incomplete one.
async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() + n > MAX_HEADER_BYTES {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}
