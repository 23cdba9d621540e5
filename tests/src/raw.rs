//! A raw frame sender (AF_PACKET) on an interface of a test namespace: what
//! an attacker on the client's network sends, spoofed addresses included.
//! Frames are built by `packet::Frame`; the sender puts the interface's
//! own MAC and its peer's in front, so the host takes them as for itself.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use anyhow::{Context, Result, bail};
use xtask::topology::Netns;

pub struct RawSender {
    fd: OwnedFd,
    /// Destination then source MAC, written over each frame's first 12 bytes.
    macs: [u8; 12],
    pub sent: u64,
}

/// An interface's MAC address, as `ip link` shows it in `ns`.
fn mac(ns: &Netns, ifname: &str) -> Result<[u8; 6]> {
    let out = ns.ip(&["-o", "link", "show", "dev", ifname])?;
    let text = out
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .with_context(|| format!("no link/ether address for {ifname}: {out}"))?;
    let mut mac = [0u8; 6];
    let parts: Vec<_> = text.split(':').collect();
    if parts.len() != 6 {
        bail!("odd MAC {text:?}");
    }
    for (m, p) in mac.iter_mut().zip(parts) {
        *m = u8::from_str_radix(p, 16)?;
    }
    Ok(mac)
}

impl RawSender {
    /// A sender on `ifname` in `ns`, whose frames go to `peer_mac`'s owner
    /// (the other end of the link, e.g. the host's veth in `peer_ns`).
    pub fn open(ns: &Netns, ifname: &str, peer_ns: &Netns, peer_ifname: &str) -> Result<Self> {
        let own = mac(ns, ifname)?;
        let peer = mac(peer_ns, peer_ifname)?;
        let name = std::ffi::CString::new(ifname)?;
        let fd = ns.enter(|| -> io::Result<OwnedFd> {
            // SAFETY: plain socket syscalls; the descriptor is owned at once.
            unsafe {
                let fd = libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                    (libc::ETH_P_ALL as u16).to_be() as i32,
                );
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                let fd = OwnedFd::from_raw_fd(fd);
                let index = libc::if_nametoindex(name.as_ptr());
                if index == 0 {
                    return Err(io::Error::last_os_error());
                }
                let mut sll: libc::sockaddr_ll = std::mem::zeroed();
                sll.sll_family = libc::AF_PACKET as u16;
                sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
                sll.sll_ifindex = index as i32;
                if libc::bind(
                    fd.as_raw_fd(),
                    &sll as *const _ as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                ) != 0
                {
                    return Err(io::Error::last_os_error());
                }
                Ok(fd)
            }
        })??;
        let mut macs = [0u8; 12];
        macs[..6].copy_from_slice(&peer);
        macs[6..].copy_from_slice(&own);
        Ok(RawSender { fd, macs, sent: 0 })
    }

    /// Sends one frame (its MACs replaced).
    pub fn send(&mut self, frame: &[u8]) -> Result<()> {
        let mut f = frame.to_vec();
        f[..12].copy_from_slice(&self.macs);
        // SAFETY: the buffer is valid for its length; the socket is ours.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), f.as_ptr().cast(), f.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error()).context("sending a raw frame");
        }
        self.sent += 1;
        Ok(())
    }
}
