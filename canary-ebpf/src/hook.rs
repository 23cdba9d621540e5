//! The hooks the ingress logic runs at, XDP and TC (tcx) ingress, behind
//! one trait: where the packet's bytes are, how long it is, and how its
//! destination is rewritten. `ingress::try_ingress` is written once over it.
//!
//! XDP edits the frame in place with incremental checksums (RFC 1624): an
//! XDP frame has no checksum state. An skb has one, and a direct edit of
//! the L4 checksum is wrong for two of them: CHECKSUM_PARTIAL (the field
//! holds only the pseudo-header sum; packets from a local namespace over
//! veth are sent so) and CHECKSUM_COMPLETE (`skb->csum` must follow the
//! bytes). TC therefore rewrites through the kernel's helpers, as egress
//! always has (`skb_rewrite`, shared by both TC programs).

use core::ffi::c_void;

use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR, BPF_F_RECOMPUTE_CSUM},
    helpers::{bpf_skb_load_bytes, bpf_xdp_load_bytes},
    programs::{TcContext, XdpContext},
};
use canary_common::{Addr, FAMILY_IPV4, PROTO_TCP, PROTO_UDP, checksum, verdict::Verdict};
use network_types::{
    ip::{Ipv4Hdr, Ipv6Hdr},
    tcp::TcpHdr,
    udp::UdpHdr,
};

use crate::parse::{Packet, TCP_CHECK_OFFSET, UDP_CHECK_OFFSET, load, ptr_at, store};

/// What the ingress logic needs from the hook it runs at.
pub trait Hook {
    /// Start and end of the bytes the program may read directly.
    fn data(&self) -> usize;
    fn data_end(&self) -> usize;
    /// The packet's length in bytes, as `bytes_in` counts it.
    fn frame_len(&self) -> u64;
    /// Rewrites the destination address and port to `addr`/`port` and fixes
    /// the IPv4 header and L4 checksums. `Err` is the verdict of a packet
    /// that could not be rewritten (and is passed as it is).
    fn rewrite_dst(&self, pkt: &Packet, addr: &Addr, port: u16) -> Result<(), Verdict>;
    /// The context as the kernel passed it, and back: a bpf_loop step
    /// gets it through its context struct (`h2`).
    fn raw(&self) -> *mut c_void;
    /// # Safety
    /// `raw` is what `raw` returned for this program run.
    unsafe fn from_raw(raw: *mut c_void) -> Self;
    /// Copies `len` bytes at `offset` of the packet, page fragments
    /// included, to `to`; false when they are not all in the packet.
    fn load(&self, offset: u32, to: *mut u8, len: u32) -> bool;
}

impl Hook for XdpContext {
    #[inline(always)]
    fn raw(&self) -> *mut c_void {
        self.ctx.cast()
    }

    #[inline(always)]
    unsafe fn from_raw(raw: *mut c_void) -> Self {
        XdpContext::new(raw.cast())
    }

    #[inline(always)]
    fn load(&self, offset: u32, to: *mut u8, len: u32) -> bool {
        // SAFETY: the helper writes at most `len` bytes to `to`, which the
        // caller sized for them (the verifier checks it too).
        unsafe { bpf_xdp_load_bytes(self.ctx, offset, to.cast(), len) == 0 }
    }

    #[inline(always)]
    fn data(&self) -> usize {
        XdpContext::data(self)
    }

    #[inline(always)]
    fn data_end(&self) -> usize {
        XdpContext::data_end(self)
    }

    #[inline(always)]
    fn frame_len(&self) -> u64 {
        (XdpContext::data_end(self) - XdpContext::data(self)) as u64
    }

    /// In place, incrementally (RFC 1624). A UDP/IPv4 checksum of 0 means
    /// "none" and stays 0; a computed UDP checksum of 0 is sent as 0xffff.
    #[inline(always)]
    fn rewrite_dst(&self, pkt: &Packet, addr: &Addr, port: u16) -> Result<(), Verdict> {
        let (start, end) = (XdpContext::data(self), XdpContext::data_end(self));
        let truncated = Verdict::PassTruncated;
        // One checked pointer per header; fields at constant offsets from it
        // (the verifier tracks bounds per pointer).
        let l4_hdr: *mut u8 = if pkt.proto == PROTO_TCP {
            ptr_at::<TcpHdr>(start, end, pkt.l4).ok_or(truncated)? as *mut u8
        } else {
            ptr_at::<UdpHdr>(start, end, pkt.l4).ok_or(truncated)? as *mut u8
        };
        let check_at = if pkt.proto == PROTO_TCP {
            TCP_CHECK_OFFSET
        } else {
            UDP_CHECK_OFFSET
        };
        let check = l4_hdr.wrapping_add(check_at).cast::<u16>();
        let dport = l4_hdr.wrapping_add(2).cast::<u16>();
        // SAFETY: every pointer is inside a header `ptr_at` checked (the L4
        // header above, the IP header below, each before use), and `load` /
        // `store` need no alignment.
        unsafe {
            let old_check = load(check);
            let skip_l4 = pkt.proto == PROTO_UDP && pkt.family == FAMILY_IPV4 && old_check == 0;
            let mut l4 = old_check;
            if pkt.family == FAMILY_IPV4 {
                let ip: *mut Ipv4Hdr = ptr_at(start, end, pkt.l3).ok_or(truncated)?;
                let old = pkt.dst[0];
                let ip_check = (&raw mut (*ip).check).cast::<u16>();
                store(ip_check, checksum::replace32(load(ip_check), old, addr[0]));
                store((&raw mut (*ip).dst_addr).cast::<u32>(), addr[0]);
                l4 = checksum::replace32(l4, old, addr[0]);
            } else {
                let ip: *mut Ipv6Hdr = ptr_at(start, end, pkt.l3).ok_or(truncated)?;
                for (old, new) in pkt.dst.iter().zip(addr) {
                    l4 = checksum::replace32(l4, *old, *new);
                }
                store((&raw mut (*ip).dst_addr).cast::<Addr>(), *addr);
            }
            l4 = checksum::replace16(l4, pkt.dport, port);
            store(dport, port);
            if !skip_l4 {
                let l4 = if pkt.proto == PROTO_UDP && l4 == 0 {
                    0xffff
                } else {
                    l4
                };
                store(check, l4);
            }
        }
        Ok(())
    }
}

impl Hook for TcContext {
    #[inline(always)]
    fn raw(&self) -> *mut c_void {
        self.skb.skb.cast()
    }

    #[inline(always)]
    unsafe fn from_raw(raw: *mut c_void) -> Self {
        TcContext::new(raw.cast())
    }

    #[inline(always)]
    fn load(&self, offset: u32, to: *mut u8, len: u32) -> bool {
        // SAFETY: as for XDP. (aya's `load_bytes` clamps the length, which
        // the verifier reads as a possibly zero-sized read and refuses.)
        unsafe { bpf_skb_load_bytes(self.skb.skb.cast(), offset, to.cast(), len) == 0 }
    }

    #[inline(always)]
    fn data(&self) -> usize {
        TcContext::data(self)
    }

    #[inline(always)]
    fn data_end(&self) -> usize {
        TcContext::data_end(self)
    }

    /// The whole skb, page fragments too (the Ethernet header included: tc
    /// ingress runs with it pushed back on).
    #[inline(always)]
    fn frame_len(&self) -> u64 {
        self.len() as u64
    }

    #[inline(always)]
    fn rewrite_dst(&self, pkt: &Packet, addr: &Addr, port: u16) -> Result<(), Verdict> {
        skb_rewrite(self, pkt, Side::Destination, addr, port)
    }
}

/// Headers the TC programs may need in the linear part of the skb:
/// Ethernet, two VLAN tags, the largest IPv4 header and a TCP header.
const HEADERS_MAX: u32 = 14 + 8 + 60 + 20;

/// Pulls the headers into the skb's linear part when they are not all
/// there (a GSO or cloned skb may keep them in page fragments), once,
/// rather than misreading such a packet as truncated.
#[inline(always)]
pub fn pull_headers(ctx: &TcContext) {
    let linear = (ctx.data_end() - ctx.data()) as u32;
    if linear < HEADERS_MAX && ctx.len() > linear {
        let _ = ctx.pull_data(ctx.len().min(HEADERS_MAX));
    }
}

/// Which address and port an skb rewrite replaces.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Egress: a reply's source goes back to the VIP.
    Source,
    /// TC ingress: a client packet's destination goes to its backend.
    Destination,
}

/// Offsets of the IPv4 header checksum and of the addresses in the IPv4
/// and IPv6 headers.
const IPV4_CHECK_OFFSET: usize = 10;
/// An IPv4 header without options.
const IPV4_MIN_LEN: usize = 20;
const IPV4_SRC_OFFSET: usize = 12;
const IPV4_DST_OFFSET: usize = 16;
const IPV6_SRC_OFFSET: usize = 8;
const IPV6_DST_OFFSET: usize = 24;

/// Rewrites `side`'s address and port to `addr`/`port` with the kernel's
/// checksum helpers, which handle CHECKSUM_PARTIAL skbs (only the
/// pseudo-header part is updated there) and CHECKSUM_COMPLETE ones
/// (`skb->csum` follows). Offsets only, no packet pointer: the helpers may
/// move the skb's data.
#[inline(always)]
pub fn skb_rewrite(
    ctx: &TcContext,
    pkt: &Packet,
    side: Side,
    addr: &Addr,
    port: u16,
) -> Result<(), Verdict> {
    let fail = Verdict::PassTruncated;
    let check = pkt.check_offset();
    let udp = if pkt.proto == PROTO_UDP {
        BPF_F_MARK_MANGLED_0 as u64
    } else {
        0
    };
    let pseudo = BPF_F_PSEUDO_HDR as u64 | udp;
    let (old_addr, old_port, port_at) = match side {
        Side::Source => (&pkt.src, pkt.sport, pkt.l4),
        Side::Destination => (&pkt.dst, pkt.dport, pkt.l4 + 2),
    };
    if pkt.family == FAMILY_IPV4 && pkt.l4 == pkt.l3 + IPV4_MIN_LEN {
        // Without IPv4 options the header checksum, both addresses and both
        // ports are 14 contiguous bytes: one store writes them all, with
        // the header checksum updated here (it is complete in every skb
        // checksum state), then the two L4 updates. Three helper calls
        // instead of five; each costs tens of ns.
        let ip: *mut Ipv4Hdr = ptr_at(ctx.data(), ctx.data_end(), pkt.l3).ok_or(fail)?;
        // SAFETY: inside the header `ptr_at` just checked; `load` needs no
        // alignment. A read only: the program writes through helpers.
        let old_check = unsafe { load((&raw const (*ip).check).cast::<u16>()) };
        let (old, new) = (old_addr[0], addr[0]);
        let (src, dst, sport, dport) = match side {
            Side::Source => (new, pkt.dst[0], port, pkt.dport),
            Side::Destination => (pkt.src[0], new, pkt.sport, port),
        };
        let mut bytes = [0u8; 14];
        bytes[0..2].copy_from_slice(&checksum::replace32(old_check, old, new).to_ne_bytes());
        bytes[2..6].copy_from_slice(&src.to_ne_bytes());
        bytes[6..10].copy_from_slice(&dst.to_ne_bytes());
        bytes[10..12].copy_from_slice(&sport.to_ne_bytes());
        bytes[12..14].copy_from_slice(&dport.to_ne_bytes());
        ctx.store(pkt.l3 + IPV4_CHECK_OFFSET, &bytes, 0)
            .map_err(|_| fail)?;
        ctx.l4_csum_replace(check, old as u64, new as u64, pseudo | 4)
            .map_err(|_| fail)?;
        ctx.l4_csum_replace(check, old_port as u64, port as u64, udp | 2)
            .map_err(|_| fail)?;
        return Ok(());
    }
    if pkt.family == FAMILY_IPV4 {
        let (old, new) = (old_addr[0] as u64, addr[0] as u64);
        let at = match side {
            Side::Source => IPV4_SRC_OFFSET,
            Side::Destination => IPV4_DST_OFFSET,
        };
        ctx.l3_csum_replace(pkt.l3 + IPV4_CHECK_OFFSET, old, new, 4)
            .map_err(|_| fail)?;
        ctx.l4_csum_replace(check, old, new, pseudo | 4)
            .map_err(|_| fail)?;
        ctx.store(pkt.l3 + at, &addr[0], 0).map_err(|_| fail)?;
    } else {
        for i in 0..4 {
            let (old, new) = (old_addr[i] as u64, addr[i] as u64);
            ctx.l4_csum_replace(check, old, new, pseudo | 4)
                .map_err(|_| fail)?;
        }
        let at = match side {
            Side::Source => IPV6_SRC_OFFSET,
            Side::Destination => IPV6_DST_OFFSET,
        };
        // With CHECKSUM_COMPLETE, l4_csum_replace takes the address change
        // out of skb->csum as if an IPv4 header checksum had absorbed it;
        // IPv6 has none, so the address store puts it back (the flag acts
        // on CHECKSUM_COMPLETE skbs only; BPF_F_IPV6 would say the same,
        // but only from Linux 6.16).
        ctx.store(pkt.l3 + at, addr, BPF_F_RECOMPUTE_CSUM as u64)
            .map_err(|_| fail)?;
    }
    ctx.l4_csum_replace(check, old_port as u64, port as u64, udp | 2)
        .map_err(|_| fail)?;
    ctx.store(port_at, &port, 0).map_err(|_| fail)?;
    Ok(())
}
