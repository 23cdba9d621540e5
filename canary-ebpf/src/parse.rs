//! Header parsing shared by both programs. Every read goes through `ptr_at`,
//! which checks the access against the end of the packet first.
//!
//! Headers sit at any alignment in a packet (an IPv6 address after a 14-byte
//! Ethernet header is 2-byte aligned at best), so a field read or written as
//! a type wider than a byte goes through `load` / `store` (unaligned access),
//! never a plain `*p`. Fields network-types declares as byte arrays are
//! copied by value and converted with `from_be_bytes` / `from_ne_bytes`: a
//! byte array has no alignment to break. (TC egress writes through the
//! kernel's `bpf_skb_store_bytes` instead, which takes byte offsets.)
//!
//! What is parsed: Ethernet, up to two VLAN tags (802.1Q / 802.1ad), IPv4
//! (any IHL: options are skipped, not interpreted) or IPv6 (fixed header only),
//! then the TCP or UDP ports. Anything else ends in an `Odd` verdict.

use core::mem::size_of;

use canary_common::{Addr, FAMILY_IPV4, FAMILY_IPV6, PROTO_TCP, PROTO_UDP, verdict::Verdict};
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
    tcp::TcpHdr,
    udp::UdpHdr,
    vlan::VlanHdr,
};

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
/// Two tags cover 802.1Q and Q-in-Q; deeper stacks are not seen on hosts.
const MAX_VLAN_TAGS: usize = 2;

/// IPv4 "more fragments" flag and fragment offset, in host order.
const IPV4_MF: u16 = 0x2000;
const IPV4_OFFSET_MASK: u16 = 0x1fff;

/// IPv6 next-header values that are extension headers (RFC 8200 and the IANA
/// registry), which we do not walk. Fragment (44) is reported as a fragment.
const IPV6_FRAGMENT: u8 = 44;
/// The IPv6 fragment header: next header, reserved, offset and flags, id.
const IPV6_FRAGMENT_LEN: usize = 8;
/// Fragment offset in the IPv6 fragment header's 16-bit field (host order).
const IPV6_OFFSET_MASK: u16 = 0xfff8;
const IPV6_EXTENSIONS: [u8; 7] = [0, 43, 51, 60, 135, 139, 140];

/// TCP flag bits (byte 13 of the TCP header).
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;
/// Offset of the flags byte in the TCP header.
const TCP_FLAGS_OFFSET: usize = 13;
/// Offset of the data-offset byte (header length in 32-bit words, high nibble).
const TCP_DOFF_OFFSET: usize = 12;
/// Offsets of the checksum within the L4 header.
pub const TCP_CHECK_OFFSET: usize = 16;
pub const UDP_CHECK_OFFSET: usize = 6;

/// A packet whose ports we could read.
pub struct Packet {
    /// Offsets of the IP and L4 headers from the start of the frame.
    pub l3: usize,
    pub l4: usize,
    pub family: u8,
    pub proto: u8,
    /// Number of VLAN tags passed over (0..=2).
    pub vlan_tags: u8,
    /// 1 when the IPv4 header carried options.
    pub ip_options: u8,
    /// TCP flags byte; 0 for UDP.
    pub tcp_flags: u8,
    /// TCP sequence and acknowledgement numbers (host order) and the
    /// segment's payload length; 0 for UDP. Close tracking needs them.
    pub seq: u32,
    pub ack_seq: u32,
    pub payload_len: u32,
    /// Offset of the L4 payload from the start of the frame (TCP: after
    /// the header's options), where a response's status line starts.
    pub payload: usize,
    pub src: Addr,
    pub dst: Addr,
    /// Ports as on the wire (network byte order).
    pub sport: u16,
    pub dport: u16,
}

impl Packet {
    /// Offset of the L4 checksum field.
    #[inline(always)]
    pub fn check_offset(&self) -> usize {
        if self.proto == PROTO_TCP {
            self.l4 + TCP_CHECK_OFFSET
        } else {
            self.l4 + UDP_CHECK_OFFSET
        }
    }

    #[inline(always)]
    pub fn has(&self, flag: u8) -> bool {
        self.tcp_flags & flag != 0
    }
}

/// Why a packet has no ports to match. `DropFragment` stands for the first
/// fragment of a TCP or UDP datagram, with its destination, protocol and
/// port set: the caller drops it only when they name a service (and passes
/// it as `PassFragment` otherwise).
#[derive(Clone, Copy)]
pub struct Odd {
    pub verdict: Verdict,
    pub dst: Addr,
    pub family: u8,
    pub proto: u8,
    /// Network byte order.
    pub dport: u16,
}

impl Odd {
    #[inline(always)]
    const fn plain(verdict: Verdict) -> Self {
        Odd {
            verdict,
            dst: [0; 4],
            family: 0,
            proto: 0,
            dport: 0,
        }
    }
}

/// Bounds-checked pointer to a `T` at `offset` into the packet.
#[inline(always)]
pub fn ptr_at<T>(start: usize, end: usize, offset: usize) -> Option<*mut T> {
    if start + offset + size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *mut T)
}

/// Reads the `T` at `p`, whatever its alignment.
///
/// # Safety
/// `p` must be valid for reads of `size_of::<T>()` bytes: inside a range
/// `ptr_at` checked.
#[inline(always)]
pub unsafe fn load<T: Copy>(p: *const T) -> T {
    // SAFETY: the caller guarantees `p` is readable; no alignment needed.
    unsafe { p.read_unaligned() }
}

/// Writes `v` at `p`, whatever its alignment.
///
/// # Safety
/// `p` must be valid for writes of `size_of::<T>()` bytes: inside a range
/// `ptr_at` checked.
#[inline(always)]
pub unsafe fn store<T: Copy>(p: *mut T, v: T) {
    // SAFETY: the caller guarantees `p` is writable; no alignment needed.
    unsafe { p.write_unaligned(v) }
}

#[inline(always)]
fn at<T>(start: usize, end: usize, offset: usize) -> Result<*mut T, Odd> {
    ptr_at(start, end, offset).ok_or(Odd::plain(Verdict::PassTruncated))
}

/// Reads a u32 as stored (network byte order in memory).
#[inline(always)]
fn word(bytes: &[u8; 4]) -> u32 {
    u32::from_ne_bytes(*bytes)
}

/// Reads an IPv6 address field as the words `Addr` holds (network order in
/// memory).
#[inline(always)]
fn addr16(field: &[u8; 16]) -> Addr {
    // SAFETY: the reference covers all 16 bytes, the size of an `Addr`.
    unsafe { load(field.as_ptr().cast::<Addr>()) }
}

/// Parses `[start, end)`; `Ok` only for TCP or UDP with readable ports.
#[inline(always)]
pub fn parse(start: usize, end: usize) -> Result<Packet, Odd> {
    let eth: *mut EthHdr = at(start, end, 0)?;
    // SAFETY: `at` checked the header lies inside the packet; `&raw const`
    // makes no reference, so the struct's alignment is not assumed.
    let mut ether_type = u16::from_be(unsafe { load(&raw const (*eth).ether_type) });
    let mut l3 = EthHdr::LEN;
    let mut vlan_tags = 0u8;
    for _ in 0..MAX_VLAN_TAGS {
        if ether_type != ETH_P_8021Q && ether_type != ETH_P_8021AD {
            break;
        }
        let tag: *mut VlanHdr = at(start, end, l3)?;
        // SAFETY: as for the Ethernet header: checked by `at`, no reference.
        ether_type = u16::from_be(unsafe { load(&raw const (*tag).ether_type) });
        l3 += VlanHdr::LEN;
        vlan_tags += 1;
    }
    match ether_type {
        ETH_P_IP => parse_ipv4(start, end, l3, vlan_tags),
        ETH_P_IPV6 => parse_ipv6(start, end, l3, vlan_tags),
        ETH_P_8021Q | ETH_P_8021AD => Err(Odd::plain(Verdict::PassVlanTooDeep)),
        _ => Err(Odd::plain(Verdict::PassNotIp)),
    }
}

#[inline(always)]
fn parse_ipv4(start: usize, end: usize, l3: usize, vlan_tags: u8) -> Result<Packet, Odd> {
    let ip: *mut Ipv4Hdr = at(start, end, l3)?;
    // SAFETY: `at` checked the whole header lies inside the packet; its
    // fields are bytes and byte arrays (alignment 1), read by value.
    let (vihl, tot_len, frags, proto, src, dst) = unsafe {
        (
            (*ip).vihl,
            u16::from_be_bytes((*ip).tot_len) as usize,
            u16::from_be_bytes((*ip).frags),
            (*ip).proto,
            word(&(*ip).src_addr),
            word(&(*ip).dst_addr),
        )
    };
    let ihl = (vihl & 0x0f) as usize * 4;
    if vihl >> 4 != 4 || ihl < Ipv4Hdr::LEN {
        // A header that claims less than its minimum is malformed: we treat
        // it as truncated (pass; the stack drops it).
        return Err(Odd::plain(Verdict::PassTruncated));
    }
    let dst = [dst, 0, 0, 0];
    if frags & (IPV4_MF | IPV4_OFFSET_MASK) != 0 {
        let first = frags & IPV4_OFFSET_MASK == 0;
        return Err(fragment(
            start,
            end,
            first,
            l3 + ihl,
            proto,
            dst,
            FAMILY_IPV4,
        ));
    }
    let mut pkt = l4(start, end, l3 + ihl, proto, tot_len.saturating_sub(ihl))?;
    pkt.l3 = l3;
    pkt.family = FAMILY_IPV4;
    pkt.vlan_tags = vlan_tags;
    pkt.ip_options = (ihl > Ipv4Hdr::LEN) as u8;
    pkt.src = [src, 0, 0, 0];
    pkt.dst = dst;
    Ok(pkt)
}

#[inline(always)]
fn parse_ipv6(start: usize, end: usize, l3: usize, vlan_tags: u8) -> Result<Packet, Odd> {
    let ip: *mut Ipv6Hdr = at(start, end, l3)?;
    // SAFETY: `at` checked the whole header lies inside the packet; its
    // fields are bytes and byte arrays (alignment 1), read by value.
    let (next, payload_len, src, dst) = unsafe {
        (
            (*ip).next_hdr,
            u16::from_be_bytes((*ip).payload_len) as usize,
            addr16(&(*ip).src_addr),
            addr16(&(*ip).dst_addr),
        )
    };
    if next == IPV6_FRAGMENT {
        let frag: *mut [u8; IPV6_FRAGMENT_LEN] = at(start, end, l3 + Ipv6Hdr::LEN)?;
        // SAFETY: `at` checked the 8-byte header; bytes have alignment 1.
        let (inner, offset) = unsafe { ((*frag)[0], u16::from_be_bytes([(*frag)[2], (*frag)[3]])) };
        let first = offset & IPV6_OFFSET_MASK == 0;
        let l4 = l3 + Ipv6Hdr::LEN + IPV6_FRAGMENT_LEN;
        return Err(fragment(start, end, first, l4, inner, dst, FAMILY_IPV6));
    }
    if IPV6_EXTENSIONS.contains(&next) {
        return Err(Odd::plain(Verdict::PassIpv6Extension));
    }
    let mut pkt = l4(start, end, l3 + Ipv6Hdr::LEN, next, payload_len)?;
    pkt.l3 = l3;
    pkt.family = FAMILY_IPV6;
    pkt.vlan_tags = vlan_tags;
    pkt.src = src;
    pkt.dst = dst;
    Ok(pkt)
}

/// A fragment: the first one of a TCP or UDP datagram whose ports can be
/// read is a `DropFragment` candidate carrying its destination; any other
/// passes.
#[inline(always)]
fn fragment(
    start: usize,
    end: usize,
    first: bool,
    l4: usize,
    proto: u8,
    dst: Addr,
    family: u8,
) -> Odd {
    if !first || (proto != PROTO_TCP && proto != PROTO_UDP) {
        return Odd::plain(Verdict::PassFragment);
    }
    // Both TCP and UDP start with the source and destination ports.
    let Some(ports) = ptr_at::<[u8; 4]>(start, end, l4) else {
        return Odd::plain(Verdict::PassFragment);
    };
    // SAFETY: `ptr_at` checked the 4 bytes; bytes have alignment 1.
    let dport = unsafe { u16::from_ne_bytes([(*ports)[2], (*ports)[3]]) };
    Odd {
        verdict: Verdict::DropFragment,
        dst,
        family,
        proto,
        dport,
    }
}

/// Reads the ports (and TCP flags and numbers) at `l4`; `l4_len` is the IP
/// payload length from the IP header. The caller fills in the rest.
#[inline(always)]
fn l4(start: usize, end: usize, l4: usize, proto: u8, l4_len: usize) -> Result<Packet, Odd> {
    let (sport, dport, tcp_flags, seq, ack_seq, payload_len, header_len) = match proto {
        PROTO_TCP => {
            let tcp: *mut TcpHdr = at(start, end, l4)?;
            // Fields are read through the one checked pointer at constant
            // offsets: the verifier tracks bounds per pointer, and LLVM may
            // drop a second check it can prove redundant.
            let flags = (tcp as *const u8).wrapping_add(TCP_FLAGS_OFFSET);
            let doff = (tcp as *const u8).wrapping_add(TCP_DOFF_OFFSET);
            // SAFETY: `at` checked the whole 20-byte header, which holds both
            // offsets; all fields read are bytes or byte arrays (alignment 1).
            unsafe {
                let header_len = (*doff >> 4) as usize * 4;
                (
                    u16::from_ne_bytes((*tcp).source),
                    u16::from_ne_bytes((*tcp).dest),
                    *flags,
                    u32::from_be_bytes((*tcp).seq),
                    u32::from_be_bytes((*tcp).ack_seq),
                    l4_len.saturating_sub(header_len) as u32,
                    header_len,
                )
            }
        }
        PROTO_UDP => {
            let udp: *mut UdpHdr = at(start, end, l4)?;
            // SAFETY: `at` checked the whole header lies inside the packet;
            // the ports are byte arrays (alignment 1), read by value.
            unsafe {
                (
                    u16::from_ne_bytes((*udp).src),
                    u16::from_ne_bytes((*udp).dst),
                    0,
                    0,
                    0,
                    0,
                    size_of::<UdpHdr>(),
                )
            }
        }
        _ => return Err(Odd::plain(Verdict::PassOtherProtocol)),
    };
    Ok(Packet {
        l3: 0,
        l4,
        family: 0,
        proto,
        vlan_tags: 0,
        ip_options: 0,
        tcp_flags,
        seq,
        ack_seq,
        payload_len,
        payload: l4 + header_len,
        src: [0; 4],
        dst: [0; 4],
        sport,
        dport,
    })
}
