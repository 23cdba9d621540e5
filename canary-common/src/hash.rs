//! The affinity hash and the split decision, shared by the kernel program and
//! userspace so tests check the very code that runs in XDP.
//!
//! A flow or client goes to the canary when `hash % 10000 < weight_bp`. The
//! hash never depends on the weight, so raising the weight only moves keys
//! stable → canary and lowering only canary → stable. The backend within a
//! version uses other bits of the same hash (`hash / 10000`), so the choice of
//! version and of backend are not correlated.

use crate::{Addr, WEIGHT_SCALE};

/// Mixes one 32-bit word into the running state (multiply-rotate, as in
/// MurmurHash3's body) so every input bit reaches every state bit.
#[inline(always)]
const fn mix(state: u32, word: u32) -> u32 {
    let k = word
        .wrapping_mul(0xcc9e_2d51)
        .rotate_left(15)
        .wrapping_mul(0x1b87_3593);
    (state ^ k)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

/// Final avalanche (MurmurHash3 fmix32): sequential ports and addresses end
/// up spread evenly over `% 10000`.
#[inline(always)]
const fn finish(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// Hash of a client address (affinity `client`).
#[inline(always)]
pub const fn client_hash(seed: u32, client: &Addr) -> u32 {
    let mut h = seed;
    h = mix(h, client[0]);
    h = mix(h, client[1]);
    h = mix(h, client[2]);
    h = mix(h, client[3]);
    finish(h)
}

/// Hash of the 5-tuple (affinity `flow`). Ports are taken as they are stored
/// (network byte order); both sides use the same representation.
#[inline(always)]
pub const fn flow_hash(
    seed: u32,
    client: &Addr,
    vip: &Addr,
    client_port: u16,
    vip_port: u16,
    proto: u8,
) -> u32 {
    let mut h = seed;
    h = mix(h, client[0]);
    h = mix(h, client[1]);
    h = mix(h, client[2]);
    h = mix(h, client[3]);
    h = mix(h, vip[0]);
    h = mix(h, vip[1]);
    h = mix(h, vip[2]);
    h = mix(h, vip[3]);
    h = mix(h, ((client_port as u32) << 16) | vip_port as u32);
    h = mix(h, proto as u32);
    finish(h)
}

/// True when a key with this hash belongs to the canary at this weight.
#[inline(always)]
pub const fn is_canary(hash: u32, weight_bp: u16) -> bool {
    hash % WEIGHT_SCALE < weight_bp as u32
}

/// Index of the backend within a version of `count` backends (`count >= 1`).
#[inline(always)]
pub const fn backend_index(hash: u32, count: u8) -> u32 {
    (hash / WEIGHT_SCALE) % count as u32
}

/// Seed for a service, derived from its name (FNV-1a) so that restarts and
/// every host of a fleet make the same decisions for the same clients.
pub const fn seed_from_name(name: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    let mut i = 0;
    while i < name.len() {
        h ^= name[i] as u32;
        h = h.wrapping_mul(0x0100_0193);
        i += 1;
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random keys (xorshift), so failures replay.
    fn keys(n: usize) -> impl Iterator<Item = Addr> {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..n).map(move |_| {
            let mut w = [0u32; 4];
            for word in &mut w {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *word = x as u32;
            }
            w
        })
    }

    #[test]
    fn raising_the_weight_never_moves_a_key_back_to_stable() {
        let seed = seed_from_name(b"sentiment");
        let weights: [u16; 8] = [0, 1, 500, 1000, 2500, 5000, 9999, 10000];
        for key in keys(100_000) {
            let h = client_hash(seed, &key);
            let mut was_canary = false;
            for w in weights {
                let now = is_canary(h, w);
                assert!(!was_canary || now, "key {key:x?} left the canary at {w} bp");
                was_canary = now;
            }
        }
    }

    #[test]
    fn weight_bounds_are_all_or_nothing() {
        for key in keys(10_000) {
            let h = client_hash(7, &key);
            assert!(!is_canary(h, 0));
            assert!(is_canary(h, 10_000));
        }
    }

    #[test]
    fn share_tracks_the_weight_for_sequential_ports() {
        // Sequential client ports are the worst case for a weak hash.
        let client = [u32::from_be_bytes([198, 18, 0, 2]), 0, 0, 0];
        let vip = [u32::from_be_bytes([198, 18, 0, 1]), 0, 0, 0];
        for weight in [1000u16, 2500, 5000] {
            let n = 20_000u32;
            let canary = (0..n)
                .filter(|p| {
                    let port = (32768 + p) as u16;
                    is_canary(
                        flow_hash(1, &client, &vip, port.to_be(), 80u16.to_be(), 6),
                        weight,
                    )
                })
                .count() as f64;
            let share = canary / n as f64 * 100.0;
            let want = weight as f64 / 100.0;
            assert!(
                (share - want).abs() < 1.0,
                "weight {want}%: share {share:.2}%"
            );
        }
    }

    #[test]
    fn backends_are_used_evenly_and_independently_of_the_version() {
        let mut per_backend = [[0u32; 4]; 2];
        for key in keys(40_000) {
            let h = client_hash(3, &key);
            per_backend[is_canary(h, 5000) as usize][backend_index(h, 4) as usize] += 1;
        }
        for row in per_backend {
            for n in row {
                // 40,000 keys over 2 versions x 4 backends: 5,000 expected each.
                assert!(
                    (4_500..5_500).contains(&n),
                    "uneven backend use: {per_backend:?}"
                );
            }
        }
    }

    #[test]
    fn seeds_differ_per_service_and_are_stable() {
        assert_ne!(seed_from_name(b"a"), seed_from_name(b"b"));
        // FNV-1a of "a" is a published constant; pinning it keeps the seed
        // (and so every client's version) the same across releases.
        assert_eq!(seed_from_name(b"a"), 0xe40c_292c);
    }
}
