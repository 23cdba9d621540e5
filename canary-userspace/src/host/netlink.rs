//! One rtnetlink request and its one answer: what `kernel::inspect` asks
//! of a link and `routes` of a route, over the netlink crates.

use std::{io, os::fd::AsRawFd, time::Duration};

use netlink_packet_core::{
    NLM_F_REQUEST, NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// The kernel answers a request at once; this only bounds a wedged socket.
const TIMEOUT: Duration = Duration::from_secs(1);

/// Sends `request` (NLM_F_REQUEST, no dump) and returns what `pick` makes
/// of the first answer it accepts; the kernel's error when it answers one.
pub fn ask<T>(
    request: RouteNetlinkMessage,
    mut pick: impl FnMut(RouteNetlinkMessage) -> Option<T>,
) -> io::Result<T> {
    let mut request = NetlinkMessage::new(
        NetlinkHeader::default(),
        NetlinkPayload::InnerMessage(request),
    );
    request.header.flags = NLM_F_REQUEST;
    request.header.sequence_number = 1;
    request.finalize();
    let mut buf = vec![0; request.buffer_len()];
    request.serialize(&mut buf);

    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    set_receive_timeout(&socket, TIMEOUT)?;
    socket.send(&buf, 0)?;
    let mut reply = Vec::with_capacity(64 * 1024);
    // One answer (or one error) for one request; a few reads at most.
    for _ in 0..4 {
        reply.clear();
        socket.recv(&mut reply, 0)?;
        for payload in payloads(&reply) {
            match payload {
                NetlinkPayload::InnerMessage(message) => {
                    if let Some(found) = pick(message) {
                        return Ok(found);
                    }
                }
                NetlinkPayload::Error(e) if e.code.is_some() => return Err(e.to_io()),
                _ => {}
            }
        }
    }
    Err(io::Error::other("no rtnetlink answer"))
}

fn set_receive_timeout(socket: &Socket, timeout: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: libc::suseconds_t::from(timeout.subsec_micros() as i32),
    };
    // SAFETY: setsockopt reads `tv`, which outlives the call, on a socket we own.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const libc::timeval as *const libc::c_void,
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The messages in one datagram (several may share it), each parsed;
/// one that cannot be read is skipped.
pub fn payloads(datagram: &[u8]) -> Vec<NetlinkPayload<RouteNetlinkMessage>> {
    let mut out = vec![];
    let mut at = 0;
    while at < datagram.len() {
        let Ok(header) = NetlinkBuffer::new_checked(&datagram[at..]) else {
            break;
        };
        let len = header.length() as usize;
        if len == 0 {
            break;
        }
        let end = (at + len).min(datagram.len());
        if let Ok(m) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&datagram[at..end]) {
            out.push(m.payload);
        }
        // Messages start at 4-byte boundaries (NLMSG_ALIGN).
        at += (len + 3) & !3;
    }
    out
}
