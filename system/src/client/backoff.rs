//! Reconnect backoff: exponential growth from a floor to a ceiling with seeded jitter.
//!
//! This module owns the delay computation only. It must never keep an rng alive: a client stores
//! its seed and a draw counter (16 bytes) instead of a ChaCha state (~300 bytes), because a
//! million simulated clients each hold one, and reconnects are rare enough to rebuild the rng.

use std::time::Duration;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The delay before reconnect attempt `attempt` (0 for the first retry after a failure).
///
/// The ceiling doubles per attempt, `min(max, min * 2^(attempt + 1))`, and the delay is drawn
/// uniformly from `[min, ceiling]` ("full jitter" above the floor): a fleet that lost its broker
/// at one instant spreads its reconnects from the very first retry, and no client retries sooner
/// than `min`. Draw `draw` of seed `seed` always gives the same delay: each draw reads its own
/// ChaCha8 stream, so the sequence is deterministic per seed and independent of wall time.
pub fn reconnect_delay(min: Duration, max: Duration, attempt: u32, seed: u64, draw: u64) -> Duration {
    assert!(!min.is_zero(), "backoff floor must be positive");
    assert!(min <= max, "backoff floor {min:?} above ceiling {max:?}");
    let min_nanos = u64::try_from(min.as_nanos()).unwrap_or(u64::MAX);
    let max_nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    let factor = 1u64.checked_shl(attempt.saturating_add(1).min(63)).unwrap_or(u64::MAX);
    let ceiling_nanos = min_nanos.saturating_mul(factor).min(max_nanos);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(draw);
    let delay_nanos = rng.random_range(min_nanos..=ceiling_nanos);
    assert!(delay_nanos >= min_nanos && delay_nanos <= max_nanos);
    Duration::from_nanos(delay_nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(10);

    #[test]
    fn delays_stay_within_the_doubling_ceiling() {
        for attempt in 0..20u32 {
            let ceiling = MIN.saturating_mul(1u32.checked_shl(attempt + 1).unwrap_or(u32::MAX)).min(MAX);
            for draw in 0..50 {
                let delay = reconnect_delay(MIN, MAX, attempt, 7, draw);
                assert!(delay >= MIN, "attempt {attempt}: {delay:?} below floor");
                assert!(delay <= ceiling, "attempt {attempt}: {delay:?} above {ceiling:?}");
            }
        }
    }

    #[test]
    fn same_seed_same_delays_other_seed_other_delays() {
        let first: Vec<Duration> = (0..8).map(|draw| reconnect_delay(MIN, MAX, 5, 42, draw)).collect();
        let again: Vec<Duration> = (0..8).map(|draw| reconnect_delay(MIN, MAX, 5, 42, draw)).collect();
        let other: Vec<Duration> = (0..8).map(|draw| reconnect_delay(MIN, MAX, 5, 43, draw)).collect();
        assert_eq!(first, again);
        assert_ne!(first, other);
        // Jitter: draws of one seed differ from each other.
        assert!(first.windows(2).any(|pair| pair[0] != pair[1]));
    }

    #[test]
    fn equal_floor_and_ceiling_gives_the_fixed_delay() {
        assert_eq!(reconnect_delay(MIN, MIN, 9, 1, 1), MIN);
        assert!(reconnect_delay(MIN, MAX, u32::MAX, 1, 1) <= MAX);
    }
}
