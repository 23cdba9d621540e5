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
}
