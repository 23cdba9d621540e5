//! Interface events. An interface deleted under canaryd takes its XDP and
//! tcx links with it; one created again under the same name starts with no
//! program, and the VIP refuses connections. canaryd listens to rtnetlink's
//! link group (RTNLGRP_LINK) and, when an event names a configured
//! interface (or an index it was attached at), waits for the burst to
//! settle and asks the owner to check every configured interface against
//! the kernel (`Daemon::check_interfaces`). A message is only a hint: the
//! check looks up what is there now, so bursts, reordering and lost events
//! (ENOBUFS) do not matter. A timer checks every second too: no event
//! comes when a program is detached or replaced behind canaryd's back, and
//! the check compares each interface's hooks with the kernel's (`inspect`).

use std::{collections::BTreeSet, io, time::Duration};

use netlink_packet_core::NetlinkPayload;
use netlink_packet_route::{RouteNetlinkMessage, link::LinkAttribute};
use netlink_sys::{Socket, protocols::NETLINK_ROUTE};
use tokio::{
    io::{Interest, unix::AsyncFd},
    time::MissedTickBehavior,
};

use super::{DaemonError, observe::Observer, owner::Handle};
use crate::host::{interfaces::interface_index, netlink};

/// How long a burst of events (delete, create, up, addresses) may go on
/// before the one check after it.
const SETTLE: Duration = Duration::from_millis(100);
/// The check without events: a detach behind canaryd's back (no link
/// event), lost events or a socket that could not be opened are found out
/// this late at worst. Each check is one RTM_GETLINK and one
/// BPF_PROG_QUERY per interface and one BPF_OBJ_GET per pinned map.
const RECHECK: Duration = Duration::from_secs(1);
/// One datagram holds one or a few link messages of a few KiB.
const RECV_BUFFER: usize = 64 * 1024;
/// A larger socket buffer makes lost bursts rarer; a lost one only costs
/// waiting for the check that ENOBUFS triggers anyway.
const SOCKET_BUFFER: usize = 1 << 20;
/// After an unexpected receive error, before trying again.
const ERROR_PAUSE: Duration = Duration::from_secs(1);

/// Follows link events until the owner stops. Never returns an error: a
/// socket that cannot be opened leaves the timer's checks.
pub async fn follow(owner: Handle, observer: Observer) {
    let socket = match subscribe() {
        Ok(s) => Some(s),
        Err(e) => {
            log::error!(
                "interface events: cannot subscribe to rtnetlink link events: {e}; \
                 checking the interfaces every {RECHECK:?} instead"
            );
            None
        }
    };
    let mut recheck = tokio::time::interval(RECHECK);
    recheck.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut buf = Vec::with_capacity(RECV_BUFFER);
    loop {
        let hint = tokio::select! {
            _ = recheck.tick() => None,
            hint = next_hint(socket.as_ref(), &observer, &mut buf) => Some(hint),
        };
        if let Some(hint) = &hint {
            log::debug!("interface events: {hint}");
            tokio::time::sleep(SETTLE).await;
            if let Some(socket) = &socket {
                drain(socket, &mut buf);
            }
        }
        // An event that changed no index waits for the timer's check.
        if hint.is_some() && !differs(&observer) {
            continue;
        }
        match owner
            .call("check interfaces", |d| Ok(d.check_interfaces(false)))
            .await
        {
            Ok(_) => {}
            Err(DaemonError::OwnerGone) => return,
            Err(e) => log::error!("checking the interfaces: {e}"),
        }
    }
}

fn subscribe() -> io::Result<AsyncFd<Socket>> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.add_membership(libc::RTNLGRP_LINK)?;
    socket.set_non_blocking(true)?;
    if let Err(e) = socket.set_rx_buf_sz(SOCKET_BUFFER) {
        log::debug!("interface events: socket buffer stays at the default: {e}");
    }
    // SAFETY: the socket owns its descriptor and moves into the AsyncFd,
    // which closes it on drop; as_raw_fd always returns that descriptor.
    unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }.map_err(io::Error::from)
}

/// Whether the kernel's interfaces differ from what the owner last
/// published: a new or vanished index, or one present but not attached (a
/// failed re-attach is tried again).
fn differs(observer: &Observer) -> bool {
    let snapshot = observer.snapshot.borrow().clone();
    snapshot.interfaces.iter().any(|i| {
        let now = interface_index(&i.name).unwrap_or(0);
        now != i.ifindex || (now != 0 && !i.attached)
    })
}

/// Waits for a link event about one of the daemon's interfaces (by name,
/// or by the index it was attached at, which a rename keeps) and says what
/// it was. Without a socket, waits for ever.
async fn next_hint(
    socket: Option<&AsyncFd<Socket>>,
    observer: &Observer,
    buf: &mut Vec<u8>,
) -> String {
    let Some(socket) = socket else {
        return std::future::pending().await;
    };
    loop {
        let mut ready = match socket.readable().await {
            Ok(r) => r,
            Err(e) => {
                tokio::time::sleep(ERROR_PAUSE).await;
                return format!("waiting for events failed: {e}");
            }
        };
        buf.clear();
        match ready.try_io(|s| s.get_ref().recv(buf, 0)) {
            // Readiness was stale; it is cleared, wait again.
            Err(_would_block) => continue,
            Ok(Ok(_)) => {
                let (names, indexes) = watched(observer);
                if let Some(event) = link_events(buf)
                    .into_iter()
                    .find(|e| names.contains(&e.name) || indexes.contains(&e.index))
                {
                    return event.to_string();
                }
            }
            Ok(Err(e)) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                return "the socket overflowed and events were lost (ENOBUFS)".into();
            }
            Ok(Err(e)) => {
                tokio::time::sleep(ERROR_PAUSE).await;
                return format!("receiving events failed: {e}");
            }
        }
    }
}

/// Reads whatever is queued without looking at it: the check that follows
/// sees its effect.
fn drain(socket: &AsyncFd<Socket>, buf: &mut Vec<u8>) {
    loop {
        buf.clear();
        match socket.get_ref().recv(buf, 0) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {}
            Err(_) => return,
        }
    }
}

/// The names and indexes the owner last published.
fn watched(observer: &Observer) -> (BTreeSet<String>, BTreeSet<u32>) {
    let snapshot = observer.snapshot.borrow();
    (
        snapshot.interfaces.iter().map(|i| i.name.clone()).collect(),
        snapshot
            .interfaces
            .iter()
            .map(|i| i.ifindex)
            .filter(|&i| i != 0)
            .collect(),
    )
}

/// One RTM_NEWLINK or RTM_DELLINK, as far as the check cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkEvent {
    pub deleted: bool,
    pub index: u32,
    pub name: String,
}

impl std::fmt::Display for LinkEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.deleted {
            "RTM_DELLINK"
        } else {
            "RTM_NEWLINK"
        };
        write!(f, "{kind} {} (ifindex {})", self.name, self.index)
    }
}

/// The link messages in one datagram (several may share it); anything else
/// or anything unreadable is skipped: the check looks for itself anyway.
pub fn link_events(datagram: &[u8]) -> Vec<LinkEvent> {
    netlink::payloads(datagram)
        .into_iter()
        .filter_map(|payload| {
            let (deleted, link) = match payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => (false, link),
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(link)) => (true, link),
                _ => return None,
            };
            let name = link
                .attributes
                .iter()
                .find_map(|a| match a {
                    LinkAttribute::IfName(n) => Some(n.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            Some(LinkEvent {
                deleted,
                index: link.header.index,
                name,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::{NetlinkHeader, NetlinkMessage};
    use netlink_packet_route::link::LinkMessage;

    use super::*;

    fn message(deleted: bool, index: u32, name: &str) -> Vec<u8> {
        let mut link = LinkMessage::default();
        link.header.index = index;
        link.attributes.push(LinkAttribute::IfName(name.into()));
        let inner = if deleted {
            RouteNetlinkMessage::DelLink(link)
        } else {
            RouteNetlinkMessage::NewLink(link)
        };
        let mut m = NetlinkMessage::new(
            NetlinkHeader::default(),
            NetlinkPayload::InnerMessage(inner),
        );
        m.finalize();
        let mut buf = vec![0; m.buffer_len()];
        m.serialize(&mut buf);
        buf
    }

    #[test]
    fn reads_every_link_message_of_a_datagram() {
        let mut datagram = message(true, 7, "eth0");
        datagram.extend(message(false, 9, "eth0"));
        assert_eq!(
            link_events(&datagram),
            vec![
                LinkEvent {
                    deleted: true,
                    index: 7,
                    name: "eth0".into()
                },
                LinkEvent {
                    deleted: false,
                    index: 9,
                    name: "eth0".into()
                },
            ]
        );
        assert_eq!(
            link_events(&datagram)[0].to_string(),
            "RTM_DELLINK eth0 (ifindex 7)"
        );
    }

    #[test]
    fn skips_what_it_cannot_read() {
        assert!(link_events(&[]).is_empty());
        assert!(link_events(&[1, 2, 3]).is_empty());
        let mut truncated = message(false, 3, "lo");
        truncated.truncate(20);
        assert!(link_events(&truncated).is_empty());
        // Garbage after a good message leaves the good one.
        let mut datagram = message(false, 3, "lo");
        datagram.extend([0xff; 7]);
        assert_eq!(link_events(&datagram).len(), 1);
    }
}
