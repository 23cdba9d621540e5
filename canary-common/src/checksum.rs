//! Incremental Internet checksum update (RFC 1624, eqn. 3), used by XDP when
//! it rewrites addresses and ports. Tests verify the result against a full
//! recomputation written independently in the test crate.

/// Folds a 32-bit one's-complement sum to 16 bits.
#[inline(always)]
pub const fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// New checksum after a 16-bit field changes from `old` to `new`.
/// All values are as stored in the packet (network byte order in memory,
/// read as native u16); one's-complement arithmetic is byte-order neutral.
#[inline(always)]
pub const fn replace16(check: u16, old: u16, new: u16) -> u16 {
    // HC' = ~(~HC + ~m + m')
    let sum = (!check) as u32 + (!old) as u32 + new as u32;
    !fold(sum)
}

/// New checksum after a 32-bit field changes from `old` to `new`.
#[inline(always)]
pub const fn replace32(check: u16, old: u32, new: u32) -> u16 {
    let sum = (!check) as u32 + ((!old) & 0xffff) + ((!old) >> 16) + (new & 0xffff) + (new >> 16);
    !fold(sum)
}

/// The one's-complement difference a 32-bit field's change from `old` to
/// `new` adds to a sum, folded to 16 bits.
#[inline(always)]
pub const fn diff32(old: u32, new: u32) -> u16 {
    fold(((!old) & 0xffff) + ((!old) >> 16) + (new & 0xffff) + (new >> 16))
}

/// The same change as `replace32` applied to a field that holds the sum
/// itself, not its complement: an L4 checksum of a CHECKSUM_PARTIAL skb,
/// which holds the pseudo-header sum (the kernel's
/// `inet_proto_csum_replace4` for such skbs).
#[inline(always)]
pub const fn replace32_partial(sum: u16, old: u32, new: u32) -> u16 {
    fold(sum as u32 + diff32(old, new) as u32)
}

/// Equal as one's-complement numbers: 0x0000 and 0xffff are both zero, and
/// two ways of computing one sum may give either.
#[inline(always)]
pub const fn same_sum(a: u16, b: u16) -> bool {
    a % 0xffff == b % 0xffff
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain RFC 1071 sum over 16-bit words, for comparison.
    fn full(words: &[u16]) -> u16 {
        !fold(words.iter().map(|&w| w as u32).sum())
    }

    #[test]
    fn incremental_matches_recomputation() {
        let mut words = [
            0x4500u16, 0x0073, 0x0000, 0x4000, 0x4011, 0, 0xc0a8, 0x0001, 0xc0a8, 0x00c7,
        ];
        let check = full(&words);
        let (old_hi, old_lo) = (words[8], words[9]);
        let new = 0xc612_0305u32;
        words[8] = (new >> 16) as u16;
        words[9] = new as u16;
        let old = ((old_hi as u32) << 16) | old_lo as u32;
        assert_eq!(replace32(check, old, new), full(&words));
        let before = full(&words);
        let old_word = words[3];
        words[3] = 0x1234;
        assert_eq!(replace16(before, old_word, 0x1234), full(&words));
    }

    /// A complemented and a plain sum move in opposite directions under one
    /// change, so they agree only when the change is zero: what lets egress
    /// tell from the kernel helper's result which one the field held.
    #[test]
    fn partial_and_complete_updates_differ_unless_the_change_is_zero() {
        let words = [0x4500u16, 0x0073, 0xc0a8, 0x0001, 0xc612, 0x0305];
        let sum = fold(words.iter().map(|&w| w as u32).sum());
        let (old, new) = (0xc0a8_0001u32, 0xc612_0009u32);
        assert!(!same_sum(
            replace32(!sum, old, new),
            replace32_partial(!sum, old, new)
        ));
        assert!(!same_sum(
            replace32(sum, old, new),
            replace32_partial(sum, old, new)
        ));
        // The plain sum after the change is the old sum plus the difference.
        let after = [0x4500u16, 0x0073, 0xc612, 0x0009, 0xc612, 0x0305];
        let sum_after = fold(after.iter().map(|&w| w as u32).sum());
        assert!(same_sum(replace32_partial(sum, old, new), sum_after));
        assert!(same_sum(replace32(!sum, old, new), !sum_after));
        // No change: both agree (and egress falls back to the helper).
        assert_eq!(diff32(old, old) % 0xffff, 0);
        assert!(same_sum(
            replace32(sum, old, old),
            replace32_partial(sum, old, old)
        ));
        assert!(same_sum(0, 0xffff));
    }
}
