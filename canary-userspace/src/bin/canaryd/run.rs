//! The daemon's life: start the data path, bind the sockets, drop
//! privileges, serve until SIGTERM/SIGINT, reload on SIGHUP.

use std::{
    fs,
    os::unix::fs::{DirBuilderExt, PermissionsExt},
    path::Path,
    sync::Arc,
};

use anyhow::{Context, Result};
use canary_userspace::{
    api::metrics,
    config::Config,
    daemon::{Daemon, Overrides, owner},
    host::caps,
    host::fds,
};
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    accept::{Gate, Spare, WhenFull},
    served::Served,
};

pub fn detach_all(config: &Config) -> Result<()> {
    let d = &config.daemon;
    let done = Daemon::detach_all(d).context("--detach-all")?;
    let state = if done.state_file {
        format!("removed the state file in {}", d.state_dir.display())
    } else {
        format!("no state file in {}", d.state_dir.display())
    };
    // Say what was found: "detached" after finding nothing would send an
    // operator looking in the wrong place.
    if !done.pins.found {
        println!(
            "found no canary pins under {}: nothing was detached; {state}. \
             Pins on a bpffs that canaryd mounted itself in its own mount namespace \
             (as under `ip netns exec`) vanish with that namespace, and its programs with them",
            d.bpffs.display()
        );
    } else if done.pins.interfaces.is_empty() {
        println!(
            "removed the pins under {}; no interface was attached; {state}",
            d.bpffs.display()
        );
    } else {
        println!(
            "removed the pins under {}; the programs are detached from {}; {state}",
            d.bpffs.display(),
            done.pins.interfaces.join(", ")
        );
    }
    Ok(())
}

pub fn run(config_path: &Path, config: Config, overrides: Overrides, reset: bool) -> Result<()> {
    // First, before the sockets and the kernel: a second canaryd on the
    // same pins stops here with nothing changed.
    let claim = Daemon::claim(&config.daemon).context("not started")?;
    if reset {
        log::warn!(
            "--reset: removing pinned state; established connections through the VIPs break"
        );
        Daemon::reset(&config.daemon, &claim).context("--reset")?;
    }
    let pins_vanish = claim.pins_vanish_with_namespace;
    // Before anything opens a descriptor: the more the limit allows, the
    // more the listeners may hold beside the reserve (see `fds`).
    let nofile = fds::raise_soft_limit().context("the descriptor limit")?;
    match nofile.refused {
        None => log::info!(
            "RLIMIT_NOFILE: soft {} (was {}), hard {}",
            nofile.soft,
            nofile.was,
            nofile.hard
        ),
        Some(errno) => log::warn!(
            "RLIMIT_NOFILE: soft {} could not be raised to the hard {} ({}); working within {}",
            nofile.soft,
            nofile.hard,
            std::io::Error::from_raw_os_error(errno),
            nofile.soft
        ),
    }
    let socket_path = config.daemon.socket.clone();
    let fleet = config.fleet.clone();
    let metrics_addr = config.daemon.metrics_listen;
    // Sockets first: a daemon that cannot serve should fail before it
    // touches the data path.
    let control = bind_control_socket(&socket_path)?;
    let metrics = std::net::TcpListener::bind(metrics_addr)
        .with_context(|| format!("binding the metrics listener on {metrics_addr}"))?;
    metrics.set_nonblocking(true)?;
    let daemon = match Daemon::start(config_path, config, overrides, claim) {
        Ok(d) => d,
        Err(e) => {
            let _ = fs::remove_file(&socket_path);
            return Err(e).context("starting the data path");
        }
    };
    // Process-wide while there is one thread: the runtime below is
    // single-threaded and any thread it starts inherits these sets.
    caps::drop_to_kept().context("dropping capabilities")?;
    log::info!(
        "serving: control socket {}, metrics http://{metrics_addr}/metrics; capabilities kept: CAP_BPF, CAP_NET_ADMIN",
        socket_path.display()
    );
    // The data path's descriptors are open now: what is left is split.
    let spare = Arc::new(Spare::open());
    let in_use = fds::open_now().context("the descriptor budget")?;
    let budget = fds::budget(nofile.soft, in_use).context("the descriptor budget")?;
    log::info!(
        "descriptors: {in_use} open, limit {}: metrics listener up to {} connections, control socket up to {}, {} kept for the state file and the rest",
        nofile.soft,
        budget.metrics,
        budget.control,
        budget.reserve
    );
    let beat_every = daemon.heartbeat_every();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .context("starting the async runtime")?;
    // Taken before the owner has the daemon, inside the runtime its
    // descriptor registers with.
    let mut daemon = daemon;
    let header_ring = {
        let _runtime = runtime.enter();
        daemon.take_header_ring()
    };
    let owner = owner::spawn(daemon).context("starting the state owner's thread")?;
    let served = Served {
        owner: owner.handle,
        observer: owner.observer,
        fleet: None,
    };
    let listeners = Listeners {
        control,
        metrics,
        budget,
        spare,
    };
    let result = runtime.block_on(async {
        match header_ring {
            Ok(ring) => {
                tokio::spawn(canary_userspace::daemon::h2_headers::drain(
                    ring,
                    served.observer.counters.clone(),
                ));
            }
            Err(e) => log::error!(
                "HTTP/2 header blocks cannot be read ({e}): grpc-status and HTTP/2 :status are not counted"
            ),
        }
        serve(served, fleet, owner.stopped, listeners, beat_every).await
    });
    // The runtime's tasks held the last handles: the owner skips what no
    // one waits for any more, finishes what it was doing and stops.
    drop(runtime);
    let joined = owner.thread.join();
    let _ = fs::remove_file(&socket_path);
    let result = match joined {
        Ok(()) => result,
        Err(panic) => Err(anyhow::anyhow!(
            "the state owner's thread panicked: {}",
            panic_message(&panic)
        )),
    };
    if pins_vanish {
        log::warn!(
            "stopped; the pins are on the bpffs canaryd mounted in its own mount namespace: \
             they, and the data path, vanish when that namespace's last process exits"
        );
    } else {
        log::info!(
            "stopped; the data path keeps running from its pins (canaryd --detach-all removes it)"
        );
    }
    result
}

/// The text of a panic's payload, as far as it is text.
fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// The sockets and what each may hold.
struct Listeners {
    control: std::os::unix::net::UnixListener,
    metrics: std::net::TcpListener,
    budget: fds::Budget,
    spare: Arc<Spare>,
}

async fn serve(
    mut served: Served,
    fleet: Option<canary_userspace::config::FleetConfig>,
    mut owner_stopped: tokio::sync::oneshot::Receiver<()>,
    listeners: Listeners,
    beat_every: std::time::Duration,
) -> Result<()> {
    let control = tokio::net::UnixListener::from_std(listeners.control)?;
    let metrics = tokio::net::TcpListener::from_std(listeners.metrics)?;
    let registry = metrics::process_registry();
    let counted =
        metrics::ListenerMetrics::register(&registry).context("registering listener metrics")?;
    let gate = |name, limit, when_full| Gate {
        name,
        limit,
        when_full,
        metrics: counted.clone(),
        spare: listeners.spare.clone(),
    };
    let webhooks = canary_userspace::controller::webhook::Webhooks::start(&registry)
        .context("starting webhook deliveries")?;
    if let Some(config) = fleet {
        let name = config.name.clone();
        let fleet = canary_userspace::fleet::Fleet::connect(config, &registry)
            .await
            .with_context(|| format!("fleet {name}: the etcd client"))?;
        served.fleet = Some(fleet);
    }
    let control_gate = gate("control", listeners.budget.control, WhenFull::Wait);
    let metrics_gate = gate("metrics", listeners.budget.metrics, WhenFull::Close);
    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::spawn(crate::control::serve(control, served.clone(), control_gate));
    tokio::spawn(crate::http::serve(
        metrics,
        served.clone(),
        registry,
        metrics_gate,
    ));
    // The heartbeat the failsafe watches: in line with other commands, so a
    // stuck owner stops it too.
    let beat = served.owner.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(beat_every);
        loop {
            tick.tick().await;
            if let Err(e) = beat.call("heartbeat", |d| d.heartbeat()).await {
                log::error!("heartbeat: {e}");
            }
        }
    });
    // A fleet's rollouts are judged by its leader, a single host's by
    // its own driver.
    match &served.fleet {
        Some(fleet) => {
            log::info!(
                "fleet {}: this host is {}; etcd {}",
                fleet.config.name,
                fleet.host(),
                fleet.config.etcd.join(", ")
            );
            tokio::spawn(canary_userspace::fleet::agent::run(
                fleet.clone(),
                served.owner.clone(),
            ));
            tokio::spawn(canary_userspace::fleet::leader::run(
                fleet.clone(),
                webhooks,
            ));
        }
        None => {
            tokio::spawn(canary_userspace::daemon::driver::run(
                served.owner.clone(),
                served.observer.clone(),
                webhooks,
            ));
        }
    }
    // Interfaces deleted and created again get the programs back.
    tokio::spawn(canary_userspace::daemon::links::follow(
        served.owner.clone(),
        served.observer.clone(),
    ));
    loop {
        tokio::select! {
            _ = hangup.recv() => {
                // In line with socket commands, on a task of its own so a
                // SIGTERM is not held up behind it; the result is logged by
                // the owner (reloaded ...) or here.
                let owner = served.owner.clone();
                tokio::spawn(async move {
                    if let Err(e) = owner.reload().await {
                        log::error!("SIGHUP: reload failed:\n{e}");
                    }
                });
            }
            _ = &mut owner_stopped => {
                anyhow::bail!("the state owner stopped while canaryd was serving");
            }
            _ = terminate.recv() => { log::info!("SIGTERM"); return Ok(()); }
            _ = interrupt.recv() => { log::info!("SIGINT"); return Ok(()); }
        }
    }
}

/// Creates the socket 0660 in a 0750 directory. A socket file left by a
/// crashed daemon is replaced; one a live daemon answers on is not.
fn bind_control_socket(path: &Path) -> Result<std::os::unix::net::UnixListener> {
    if let Some(dir) = path.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!(
                "another canaryd answers on {}; stop it first or pass another --socket",
                path.display()
            );
        }
        fs::remove_file(path)
            .with_context(|| format!("removing stale socket {}", path.display()))?;
    }
    let listener = std::os::unix::net::UnixListener::bind(path)
        .with_context(|| format!("binding the control socket {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o660))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}
