//! Full Internet checksum (RFC 1071) over byte slices, used to build expected
//! packets. Written without reference to canary-common's incremental update,
//! so a wrong update in the data path shows up as a byte mismatch.

/// One's-complement sum of `parts`, concatenated, as big-endian 16-bit words.
pub fn internet(parts: &[&[u8]]) -> u16 {
    let bytes: Vec<u8> = parts.concat();
    let mut sum: u64 = 0;
    for pair in bytes.chunks(2) {
        let hi = pair[0] as u64;
        let lo = pair.get(1).copied().unwrap_or(0) as u64;
        sum += (hi << 8) | lo;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc1071_example() {
        // The worked example in RFC 1071 section 3: sum 0xddf2, checksum !0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(super::internet(&[&data]), !0xddf2);
    }
}
