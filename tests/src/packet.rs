//! Test frames: Ethernet (optionally VLAN-tagged), IPv4 (optionally with
//! options or fragment bits) or IPv6 (optionally with one extension header),
//! then TCP, UDP or raw payload. Checksums come from `checksum::internet`.

use std::net::{IpAddr, SocketAddr};

use crate::checksum::internet;

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;
pub const ICMPV6: u8 = 58;

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

#[derive(Clone, Debug)]
pub struct Frame {
    /// TPIDs of VLAN tags, outermost first (0x8100 or 0x88a8).
    pub vlans: Vec<u16>,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    pub tcp_flags: u8,
    /// TCP sequence number (default 1000), and the acknowledgement number
    /// sent when ACK is set (default 2000).
    pub seq: u32,
    pub ack: u32,
    /// IPv4 options (padded to a multiple of 4 by the caller).
    pub ipv4_options: Vec<u8>,
    /// IPv4 flags + fragment offset field, host order.
    pub ipv4_frag: u16,
    /// IPv6 extension header type inserted before the L4 header.
    pub ipv6_ext: Option<u8>,
    /// With `ipv6_ext` 44 (fragment): the offset-and-flags field, host
    /// order (offset in 8-byte units << 3, M flag in bit 0). Default 1: the
    /// first fragment, more to come.
    pub ipv6_frag: u16,
    /// Send UDP/IPv4 with checksum 0 ("no checksum").
    pub udp_no_checksum: bool,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn tcp(src: SocketAddr, dst: SocketAddr, flags: u8) -> Frame {
        Frame::new(src, dst, TCP, flags)
    }

    pub fn udp(src: SocketAddr, dst: SocketAddr) -> Frame {
        Frame::new(src, dst, UDP, 0)
    }

    /// A non-TCP/UDP packet (ICMP echo and the like): payload only.
    pub fn raw(src: IpAddr, dst: IpAddr, proto: u8) -> Frame {
        let mut f = Frame::new(SocketAddr::new(src, 0), SocketAddr::new(dst, 0), proto, 0);
        f.payload = vec![8, 0, 0, 0, 0, 1, 0, 1];
        f
    }

    fn new(src: SocketAddr, dst: SocketAddr, proto: u8, tcp_flags: u8) -> Frame {
        Frame {
            vlans: vec![],
            src: src.ip(),
            dst: dst.ip(),
            proto,
            sport: src.port(),
            dport: dst.port(),
            tcp_flags,
            seq: 1000,
            ack: 2000,
            ipv4_options: vec![],
            ipv4_frag: 0x4000, // DF, as Linux sends TCP
            ipv6_ext: None,
            ipv6_frag: 1,
            udp_no_checksum: false,
            payload: b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        }
    }

    /// The same frame with another source / destination (what a translation
    /// is expected to produce).
    pub fn with_dst(&self, dst: SocketAddr) -> Frame {
        Frame {
            dst: dst.ip(),
            dport: dst.port(),
            ..self.clone()
        }
    }

    /// The same frame with another payload (empty for a bare ACK or RST).
    pub fn with_payload(&self, payload: &[u8]) -> Frame {
        Frame {
            payload: payload.to_vec(),
            ..self.clone()
        }
    }

    pub fn with_src(&self, src: SocketAddr) -> Frame {
        Frame {
            src: src.ip(),
            sport: src.port(),
            ..self.clone()
        }
    }

    pub fn bytes(&self) -> Vec<u8> {
        let l4 = self.l4();
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(&DST_MAC);
        out.extend_from_slice(&SRC_MAC);
        for tpid in &self.vlans {
            out.extend_from_slice(&tpid.to_be_bytes());
            out.extend_from_slice(&100u16.to_be_bytes()); // VLAN id 100
        }
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                out.extend_from_slice(&0x0800u16.to_be_bytes());
                let ihl = 20 + self.ipv4_options.len();
                let mut ip = vec![0x40 | (ihl / 4) as u8, 0];
                ip.extend_from_slice(&((ihl + l4.len()) as u16).to_be_bytes());
                ip.extend_from_slice(&0x1234u16.to_be_bytes());
                ip.extend_from_slice(&self.ipv4_frag.to_be_bytes());
                ip.extend_from_slice(&[64, self.proto, 0, 0]);
                ip.extend_from_slice(&s.octets());
                ip.extend_from_slice(&d.octets());
                ip.extend_from_slice(&self.ipv4_options);
                let c = internet(&[&ip]);
                ip[10..12].copy_from_slice(&c.to_be_bytes());
                out.extend_from_slice(&ip);
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                out.extend_from_slice(&0x86ddu16.to_be_bytes());
                let ext_len = if self.ipv6_ext.is_some() { 8 } else { 0 };
                out.extend_from_slice(&[0x60, 0, 0, 0]);
                out.extend_from_slice(&((ext_len + l4.len()) as u16).to_be_bytes());
                out.push(self.ipv6_ext.unwrap_or(self.proto));
                out.push(64);
                out.extend_from_slice(&s.octets());
                out.extend_from_slice(&d.octets());
                match self.ipv6_ext {
                    // Fragment header: next header, reserved, offset and
                    // flags, identification.
                    Some(44) => {
                        out.extend_from_slice(&[self.proto, 0]);
                        out.extend_from_slice(&self.ipv6_frag.to_be_bytes());
                        out.extend_from_slice(&[0, 0, 0x12, 0x34]);
                    }
                    // Minimal 8-byte extension header: next header, length 0, PadN.
                    Some(_) => out.extend_from_slice(&[self.proto, 0, 1, 4, 0, 0, 0, 0]),
                    None => {}
                }
            }
            _ => panic!("mixed address families in a test frame"),
        }
        out.extend_from_slice(&l4);
        out
    }

    fn l4(&self) -> Vec<u8> {
        let mut seg = match self.proto {
            TCP => {
                let mut h = vec![];
                h.extend_from_slice(&self.sport.to_be_bytes());
                h.extend_from_slice(&self.dport.to_be_bytes());
                h.extend_from_slice(&self.seq.to_be_bytes());
                h.extend_from_slice(
                    &(if self.tcp_flags & ACK != 0 {
                        self.ack
                    } else {
                        0
                    })
                    .to_be_bytes(),
                );
                h.extend_from_slice(&[0x50, self.tcp_flags, 0xff, 0xff, 0, 0, 0, 0]);
                h
            }
            UDP => {
                let mut h = vec![];
                h.extend_from_slice(&self.sport.to_be_bytes());
                h.extend_from_slice(&self.dport.to_be_bytes());
                h.extend_from_slice(&((8 + self.payload.len()) as u16).to_be_bytes());
                h.extend_from_slice(&[0, 0]);
                h
            }
            _ => vec![],
        };
        seg.extend_from_slice(&self.payload);
        let check_at = match self.proto {
            TCP => 16,
            UDP => 6,
            _ => return seg,
        };
        if self.proto == UDP && self.udp_no_checksum && self.src.is_ipv4() {
            return seg;
        }
        let pseudo = self.pseudo_header(seg.len());
        let mut c = internet(&[&pseudo, &seg]);
        if self.proto == UDP && c == 0 {
            c = 0xffff;
        }
        seg[check_at..check_at + 2].copy_from_slice(&c.to_be_bytes());
        seg
    }

    fn pseudo_header(&self, len: usize) -> Vec<u8> {
        let mut p = vec![];
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                p.extend_from_slice(&s.octets());
                p.extend_from_slice(&d.octets());
                p.extend_from_slice(&[0, self.proto]);
                p.extend_from_slice(&(len as u16).to_be_bytes());
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                p.extend_from_slice(&s.octets());
                p.extend_from_slice(&d.octets());
                p.extend_from_slice(&(len as u32).to_be_bytes());
                p.extend_from_slice(&[0, 0, 0, self.proto]);
            }
            _ => unreachable!("families checked in bytes()"),
        }
        p
    }
}

/// An ARP request frame (who-has 198.18.0.1).
pub fn arp() -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&SRC_MAC);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&SRC_MAC);
    f.extend_from_slice(&[198, 18, 0, 2, 0, 0, 0, 0, 0, 0, 198, 18, 0, 1]);
    f
}

/// Hex dump on one line, for replaying a failing case (e.g. with scapy's
/// `Ether(bytes.fromhex("..."))`).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
