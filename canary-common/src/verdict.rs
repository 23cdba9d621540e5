//! The verdict table: what happens to every packet either program sees.
//!
//! Every packet lands in exactly one verdict, counted in its own slot of the
//! VERDICTS per-CPU array, so the table doubles as the documentation of what
//! happens to odd input. Each row gives the verdict's slot, its name (as
//! exported to metrics and printed in test failures) and its action (what
//! the program does with the packet); the kernel and userspace both read
//! them from here.

/// What a program does with a packet that got a verdict.
#[repr(u32)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Action {
    /// Passed on untouched (XDP_PASS, TC_ACT_OK).
    Pass,
    /// Dropped (XDP_DROP). Only ingress drops: egress turns the verdicts
    /// that would drop into a pass, so a reply is never lost.
    Drop,
    /// Rewritten to a backend (ingress) or back to the VIP (egress), then
    /// passed on.
    Translated,
}

impl Action {
    /// Lower-case name, as in the odd-input table of docs/DATAPATH.md.
    pub const fn name(self) -> &'static str {
        match self {
            Action::Pass => "pass",
            Action::Drop => "drop",
            Action::Translated => "translated",
        }
    }
}

/// Defines `Verdict` and its table from one list of rows, so a verdict cannot
/// get a slot without a name and an action, and `COUNT` cannot drift.
macro_rules! verdicts {
    ($( $(#[doc = $doc:literal])* $variant:ident = $slot:literal, $name:literal, $action:ident; )*) => {
        /// A verdict; its discriminant is its slot in the VERDICTS array.
        #[repr(u32)]
        #[derive(Clone, Copy, PartialEq, Eq, Debug)]
        pub enum Verdict {
            $( $(#[doc = $doc])* $variant = $slot, )*
        }

        impl Verdict {
            /// Every verdict, in slot order.
            pub const ALL: &[Verdict] = &[$(Verdict::$variant),*];

            /// Name as exported to metrics and printed in test failures.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Verdict::$variant => $name,)*
                }
            }

            /// What the program does with the packet.
            #[inline(always)]
            pub const fn action(self) -> Action {
                match self {
                    $(Verdict::$variant => Action::$action,)*
                }
            }
        }
    };
}

verdicts! {
    /// Not IPv4/IPv6 (ARP, LLDP, ...): passed untouched.
    PassNotIp = 0, "pass_not_ip", Pass;
    /// IP but not addressed to a configured service: passed untouched.
    PassNotService = 1, "pass_not_service", Pass;
    /// Neither TCP nor UDP (ICMP, SCTP, ...): passed untouched, even to a VIP
    /// address, so ping and ICMP errors still reach the host stack.
    PassOtherProtocol = 2, "pass_other_protocol", Pass;
    /// Headers end before the field we must read (Ethernet, VLAN, IP or L4):
    /// passed untouched; we never read past the packet and the stack's own
    /// validation drops what is malformed.
    PassTruncated = 3, "pass_truncated", Pass;
    /// More than two VLAN tags: passed untouched (not parsed further).
    PassVlanTooDeep = 4, "pass_vlan_too_deep", Pass;
    /// The first fragment (IPv4, or IPv6 with a fragment header) of a
    /// datagram to a service's address, port and protocol: dropped. Only the
    /// first fragment carries ports, so the rest could not follow it to a
    /// backend; TCP does not fragment (path MTU discovery), and a UDP
    /// service must keep its datagrams under the path MTU.
    DropFragment = 5, "drop_fragment", Drop;
    /// IPv6 packet with an extension header other than a fragment header:
    /// passed untouched (we do not walk extension chains in the fast path,
    /// so such a packet is never split; clients do not send them on TCP).
    PassIpv6Extension = 6, "pass_ipv6_extension", Pass;
    /// Service whose chosen and fallback versions have no backend: dropped.
    DropNoBackend = 7, "drop_no_backend", Drop;
    /// Translated to a backend (ingress) or back to the VIP (egress).
    Translated = 8, "translated", Translated;
    /// Translated, and the IPv4 header carried options (handled: the L4
    /// offset follows IHL; options are left as they are).
    TranslatedIpv4Options = 9, "translated_ipv4_options", Translated;
    /// Translated, and the frame carried one or two VLAN tags (kept as is).
    TranslatedVlan = 10, "translated_vlan", Translated;
    /// Egress: reply from a backend address with no live flow entry (evicted,
    /// or a client talking to the backend port directly): passed untouched.
    EgressNoFlow = 11, "egress_no_flow", Pass;
    /// Failed map update for a new flow: passed translated, but not pinned.
    FlowTableUpdateFailed = 12, "flow_table_update_failed", Translated;
    /// A fragment that is not the first of a datagram to a service port
    /// (any non-first fragment, or a first one to another port or
    /// protocol): passed untouched, so large pings and other traffic to the
    /// host's own address work as without canary.
    PassFragment = 13, "pass_fragment", Pass;
    /// A client RST on an established flow whose sequence number is not the
    /// one the backend acknowledged last: translated to the flow's backend
    /// (which challenges it, RFC 5961), but the entry is kept. A blind
    /// spoofed RST lands here.
    TranslatedRstUnverified = 14, "translated_rst_unverified", Translated;
    /// A SYN on an established flow that is not closing: translated to the
    /// flow's backend (which answers with a challenge ACK), not decided
    /// again. A spoofed SYN on a live tuple lands here.
    TranslatedSynEstablished = 15, "translated_syn_established", Translated;
}

impl Verdict {
    /// Slot in each program's half of the VERDICTS array.
    #[inline(always)]
    pub const fn slot(self) -> u32 {
        self as u32
    }

    /// The verdict counted in `slot`, if there is one.
    pub const fn from_slot(slot: u32) -> Option<Verdict> {
        if slot < COUNT {
            Some(Verdict::ALL[slot as usize])
        } else {
            None
        }
    }
}

/// Number of slots (per program).
pub const COUNT: u32 = Verdict::ALL.len() as u32;

/// Names by slot, as exported to metrics and printed in test failures.
pub const NAMES: [&str; COUNT as usize] = {
    let mut names = [""; COUNT as usize];
    let mut i = 0;
    while i < names.len() {
        names[i] = Verdict::ALL[i].name();
        i += 1;
    }
    names
};

// Slot numbers as plain integers, for code that indexes the VERDICTS array
// (userspace, tests).
pub const PASS_NOT_IP: u32 = Verdict::PassNotIp.slot();
pub const PASS_NOT_SERVICE: u32 = Verdict::PassNotService.slot();
pub const PASS_OTHER_PROTOCOL: u32 = Verdict::PassOtherProtocol.slot();
pub const PASS_TRUNCATED: u32 = Verdict::PassTruncated.slot();
pub const PASS_VLAN_TOO_DEEP: u32 = Verdict::PassVlanTooDeep.slot();
pub const DROP_FRAGMENT: u32 = Verdict::DropFragment.slot();
pub const PASS_IPV6_EXTENSION: u32 = Verdict::PassIpv6Extension.slot();
pub const DROP_NO_BACKEND: u32 = Verdict::DropNoBackend.slot();
pub const TRANSLATED: u32 = Verdict::Translated.slot();
pub const TRANSLATED_IPV4_OPTIONS: u32 = Verdict::TranslatedIpv4Options.slot();
pub const TRANSLATED_VLAN: u32 = Verdict::TranslatedVlan.slot();
pub const EGRESS_NO_FLOW: u32 = Verdict::EgressNoFlow.slot();
pub const FLOW_TABLE_UPDATE_FAILED: u32 = Verdict::FlowTableUpdateFailed.slot();
pub const PASS_FRAGMENT: u32 = Verdict::PassFragment.slot();
pub const TRANSLATED_RST_UNVERIFIED: u32 = Verdict::TranslatedRstUnverified.slot();
pub const TRANSLATED_SYN_ESTABLISHED: u32 = Verdict::TranslatedSynEstablished.slot();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_dense_and_in_order() {
        // A new verdict resizes the pinned VERDICTS map and moves its egress
        // half: bump PIN_LAYOUT with it, then this number.
        assert_eq!(COUNT, 16);
        for (i, v) in Verdict::ALL.iter().enumerate() {
            assert_eq!(v.slot(), i as u32, "{v:?} is listed out of slot order");
            assert_eq!(Verdict::from_slot(i as u32), Some(*v));
        }
        assert_eq!(Verdict::from_slot(COUNT), None);
    }

    #[test]
    fn names_are_the_table_rows_and_unique() {
        for (i, v) in Verdict::ALL.iter().enumerate() {
            let name = v.name();
            assert_eq!(NAMES[i], name);
            assert!(!name.is_empty());
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{name}: metric label values are snake_case"
            );
            assert!(
                NAMES.iter().filter(|n| **n == name).count() == 1,
                "{name} appears twice"
            );
        }
    }

    /// A name says its action (`pass_*`, `drop_*`, `translated*`), except the
    /// two named for where they happen; those are pinned here.
    #[test]
    fn actions_match_names() {
        for v in Verdict::ALL {
            let want = match *v {
                Verdict::EgressNoFlow => Action::Pass,
                Verdict::FlowTableUpdateFailed => Action::Translated,
                _ => {
                    let name = v.name();
                    let prefix = name.split('_').next().unwrap();
                    match prefix {
                        "pass" => Action::Pass,
                        "drop" => Action::Drop,
                        "translated" => Action::Translated,
                        _ => panic!("{name}: no action prefix and not pinned"),
                    }
                }
            };
            assert_eq!(v.action(), want, "{v:?}");
        }
    }

    #[test]
    fn integer_slots_match_the_enum() {
        let pairs = [
            (PASS_NOT_IP, Verdict::PassNotIp),
            (PASS_NOT_SERVICE, Verdict::PassNotService),
            (PASS_OTHER_PROTOCOL, Verdict::PassOtherProtocol),
            (PASS_TRUNCATED, Verdict::PassTruncated),
            (PASS_VLAN_TOO_DEEP, Verdict::PassVlanTooDeep),
            (DROP_FRAGMENT, Verdict::DropFragment),
            (PASS_IPV6_EXTENSION, Verdict::PassIpv6Extension),
            (DROP_NO_BACKEND, Verdict::DropNoBackend),
            (TRANSLATED, Verdict::Translated),
            (TRANSLATED_IPV4_OPTIONS, Verdict::TranslatedIpv4Options),
            (TRANSLATED_VLAN, Verdict::TranslatedVlan),
            (EGRESS_NO_FLOW, Verdict::EgressNoFlow),
            (FLOW_TABLE_UPDATE_FAILED, Verdict::FlowTableUpdateFailed),
            (PASS_FRAGMENT, Verdict::PassFragment),
            (TRANSLATED_RST_UNVERIFIED, Verdict::TranslatedRstUnverified),
            (
                TRANSLATED_SYN_ESTABLISHED,
                Verdict::TranslatedSynEstablished,
            ),
        ];
        assert_eq!(pairs.len(), Verdict::ALL.len());
        for (slot, v) in pairs {
            assert_eq!(slot, v.slot());
        }
    }
}
