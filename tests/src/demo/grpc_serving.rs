//! The gRPC scenario's model servers: `tests/grpc/server.py --model` in the
//! backend namespaces, each evaluating its version's tree as the demo
//! trained it (exported to JSON, `Model::to_json`; `tree_model.py` walks it
//! as linfa-trees does), over HTTP/2 without TLS. The canary's fault is the
//! HTTP scenario's, answered the gRPC way: a rejected input is an
//! UNAVAILABLE call under `:status 200`.

use std::{
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use xtask::topology::Netns;

use super::{
    model::{CLASSES, Model, Sample},
    model_server::{Fault, REJECT_SEPAL_WIDTH_ABOVE},
};
use crate::grpc::{GrpcServer, ServerOptions};

/// The port both versions serve gRPC on.
pub const GRPC_PORT: u16 = 50051;

/// What the Python processes read: each version's tree and the labelled
/// samples the clients send.
pub struct ModelFiles {
    pub trees: [PathBuf; 2],
    pub samples: PathBuf,
}

/// Writes the stable and canary trees and the held-out samples under `dir`
/// (`model-stable.json`, `model-canary.json`, `held-out.json`).
pub fn write_files(
    dir: &Path,
    stable: &Model,
    canary: &Model,
    held_out: &[Sample],
) -> Result<ModelFiles> {
    let write = |name: &str, value: serde_json::Value| -> Result<PathBuf> {
        let path = dir.join(name);
        fs::write(&path, value.to_string())
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    };
    let samples: Vec<serde_json::Value> = held_out
        .iter()
        .map(|s| serde_json::json!({ "x": s.features, "label": CLASSES[s.label] }))
        .collect();
    Ok(ModelFiles {
        trees: [
            write("model-stable.json", stable.to_json())?,
            write("model-canary.json", canary.to_json())?,
        ],
        samples: write("held-out.json", samples.into())?,
    })
}

/// Serves the tree in `tree` as `version` on `addr` in `ns`, with `fault`.
pub fn start(
    ns: &Netns,
    addr: SocketAddr,
    version: &str,
    tree: &Path,
    fault: Fault,
) -> Result<GrpcServer> {
    let mut options = ServerOptions {
        model: Some(tree.to_owned()),
        ..Default::default()
    };
    match fault {
        Fault::None => {}
        Fault::RejectsInputs => options.reject_sepal_width_above = Some(REJECT_SEPAL_WIDTH_ABOVE),
        Fault::Slower(extra) => options.delay = extra,
    }
    GrpcServer::start(ns, addr, version, &options)
}
