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
        let mut at = 0;
        while at < reply.len() {
            let Ok(header) = NetlinkBuffer::new_checked(&reply[at..]) else {
                break;
            };
            let len = header.length() as usize;
            if len == 0 {
                break;
            }
            let end = (at + len).min(reply.len());
            match NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply[at..end]) {
                Ok(NetlinkMessage {
                    payload: NetlinkPayload::InnerMessage(message),
                    ..
                }) => {
                    if let Some(found) = pick(message) {
                        return Ok(found);
                    }
                }
                Ok(NetlinkMessage {
                    payload: NetlinkPayload::Error(e),
                    ..
                }) if e.code.is_some() => return Err(e.to_io()),
                _ => {}
            }
            at += (len + 3) & !3;
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
