//! Seeded randomness for the fast engine: one run seed, independent sub-streams per purpose.
//!
//! This module owns how randomness is derived from the run seed. Each consumer (network latency,
//! packet loss, per-device client jitter, workload jitter) gets its own ChaCha8 stream, selected
//! with ChaCha's 64-bit stream parameter or a SplitMix64-derived seed, so adding a consumer never
//! perturbs the numbers another consumer draws. It must never draw from an unseeded source.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The purposes that draw randomness. The discriminant selects the ChaCha stream; never reuse or
/// renumber one, or old seeds stop replaying.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Stream {
    /// Link latency draws.
    NetworkLatency = 1,
    /// Packet loss draws (retransmission delays).
    NetworkLoss = 2,
    /// Seeds of per-device client cores (reconnect jitter).
    DeviceClients = 3,
    /// Workload jitter (publish phase offsets).
    Workload = 4,
    /// Seeds of subscriber client cores.
    SubscriberClients = 5,
    /// Seeds of pod cores.
    Pods = 6,
}

/// A ChaCha8 generator for one purpose, derived from the run seed.
pub fn stream_rng(run_seed: u64, stream: Stream) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(run_seed);
    rng.set_stream(stream as u64);
    assert_eq!(rng.get_stream(), stream as u64);
    rng
}

/// A 64-bit seed for the `index`-th member of a purpose (device 17's client core, say), stable
/// when members are added or removed elsewhere. SplitMix64 finalisers mix the three inputs.
pub fn member_seed(run_seed: u64, stream: Stream, index: u64) -> u64 {
    let seed = splitmix64(splitmix64(run_seed ^ splitmix64(stream as u64)) ^ index);
    // A zero seed is legal for ChaCha but suspicious as an output of the mixer; it is vanishingly
    // unlikely and harmless, so it is only checked in debug builds.
    debug_assert!(seed != 0 || run_seed == 0);
    seed
}

/// The SplitMix64 finaliser (Steele, Lea, Flood 2014): a bijective 64-bit mixer.
pub const fn splitmix64(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn streams_are_independent_and_reproducible() {
        let mut latency_a = stream_rng(7, Stream::NetworkLatency);
        let mut latency_b = stream_rng(7, Stream::NetworkLatency);
        let mut loss = stream_rng(7, Stream::NetworkLoss);
        let first = latency_a.next_u64();
        assert_eq!(first, latency_b.next_u64());
        assert_ne!(first, loss.next_u64());
        assert_ne!(first, stream_rng(8, Stream::NetworkLatency).next_u64());
    }

    #[test]
    fn member_seeds_differ_per_member_and_purpose() {
        assert_ne!(member_seed(1, Stream::DeviceClients, 0), member_seed(1, Stream::DeviceClients, 1));
        assert_ne!(member_seed(1, Stream::DeviceClients, 0), member_seed(1, Stream::SubscriberClients, 0));
        assert_eq!(member_seed(1, Stream::DeviceClients, 5), member_seed(1, Stream::DeviceClients, 5));
    }
}
