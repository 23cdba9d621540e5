//! The control socket: one JSON request line in, one JSON response line out.

use canary_userspace::api::{self, MAX_REQUEST_BYTES, Request, Response, Version};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
    time::{Duration, timeout},
};

use crate::run::Shared;

/// A client that sends nothing is dropped after this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn serve(listener: UnixListener, shared: Shared) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(answer(stream, shared.clone()));
            }
            Err(e) => {
                log::warn!("control socket accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn answer(stream: UnixStream, shared: Shared) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read.take(MAX_REQUEST_BYTES as u64 + 1));
    let mut line = String::new();
    let response = match timeout(REQUEST_TIMEOUT, reader.read_line(&mut line)).await {
        Err(_) => return,
        Ok(Err(e)) => Response::rejected(format!("reading the request: {e}")),
        Ok(Ok(_)) if line.len() > MAX_REQUEST_BYTES => {
            Response::rejected(format!("request longer than {MAX_REQUEST_BYTES} bytes"))
        }
        Ok(Ok(_)) => match serde_json::from_str::<Request>(&line) {
            Err(e) => Response::rejected(format!("bad request: {e}")),
            Ok(request) => handle(&shared, request),
        },
    };
    let mut out = serde_json::to_string(&response).unwrap_or_else(|e| {
        format!("{{\"ok\":false,\"error\":\"encoding the response failed: {e}\"}}")
    });
    out.push('\n');
    let _ = write.write_all(out.as_bytes()).await;
}

fn handle(shared: &Shared, request: Request) -> Response {
    // Requests are short map reads and writes; one at a time keeps
    // concurrent set-weight calls from interleaving with a reload.
    let mut daemon = shared.lock().unwrap_or_else(|p| p.into_inner());
    match request {
        Request::Version => Response::ok(Version {
            version: env!("CARGO_PKG_VERSION").into(),
            api_version: api::API_VERSION,
        }),
        Request::Status => match daemon.status() {
            Ok(s) => Response::ok(s),
            Err(e) => Response::rejected(format!("reading the data path: {e:#}")),
        },
        Request::SetWeight { service, percent } => match daemon.set_weight(&service, percent) {
            Ok(r) => Response::ok(r),
            Err(e) => Response::rejected(e),
        },
        Request::Reload => match daemon.reload() {
            Ok(r) => Response::ok(r),
            Err(e) => {
                log::error!("reload rejected, nothing changed:\n{e}");
                Response::rejected(e)
            }
        },
    }
}
