//! Time as the sans-IO cores see it: a [`Time`] is an instant on the world's own clock, handed in
//! by whoever drives the core (a tokio shell, the fast simulator, turmoil).
//!
//! This module owns the instant type and the [`Clock`] seam. It must never read a real clock
//! itself: the cores stay deterministic because time only ever arrives as an argument.

use std::fmt;
use std::ops::{Add, AddAssign, Sub};
use std::time::Duration;

/// An instant on the world's clock, in nanoseconds since the world started.
///
/// `u64` nanoseconds last 584 years, far beyond any run; arithmetic that would overflow is a bug
/// and panics.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Time(u64);

impl Time {
    /// The moment the world started.
    pub const ZERO: Time = Time(0);
    /// The far future: a timer at `MAX` never fires.
    pub const MAX: Time = Time(u64::MAX);

    pub const fn from_nanos(nanos: u64) -> Time {
        Time(nanos)
    }

    pub const fn from_millis(millis: u64) -> Time {
        Time(millis * 1_000_000)
    }

    pub const fn from_secs(secs: u64) -> Time {
        Time(secs * 1_000_000_000)
    }

    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    pub const fn as_millis(self) -> u64 {
        self.0 / 1_000_000
    }

    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }

    /// The time elapsed from `earlier` to `self`, or zero when `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Time) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// `self + duration`, saturating at [`Time::MAX`] (used for "never" deadlines).
    pub fn saturating_add(self, duration: Duration) -> Time {
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        Time(self.0.saturating_add(nanos))
    }
}

impl Add<Duration> for Time {
    type Output = Time;
    fn add(self, duration: Duration) -> Time {
        let nanos = u64::try_from(duration.as_nanos()).expect("duration overflows u64 nanoseconds");
        Time(self.0.checked_add(nanos).expect("time overflow"))
    }
}

impl AddAssign<Duration> for Time {
    fn add_assign(&mut self, duration: Duration) {
        *self = *self + duration;
    }
}

impl Sub<Time> for Time {
    type Output = Duration;
    /// Panics when `earlier > self`: time going backwards is a bug in the driver.
    fn sub(self, earlier: Time) -> Duration {
        assert!(earlier.0 <= self.0, "time went backwards: {earlier:?} > {self:?}");
        Duration::from_nanos(self.0 - earlier.0)
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:09}s", self.0 / 1_000_000_000, self.0 % 1_000_000_000)
    }
}

/// The clock seam of the shells: production reads tokio's clock (which turmoil simulates), the
/// fast simulator hands its own time to the cores directly and needs no clock at all.
pub trait Clock: Clone + Send + Sync + 'static {
    /// The current instant on this world's clock.
    fn now(&self) -> Time;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_roundtrips() {
        let start = Time::from_millis(1_500);
        let later = start + Duration::from_millis(250);
        assert_eq!(later.as_millis(), 1_750);
        assert_eq!(later - start, Duration::from_millis(250));
        assert_eq!(start.saturating_duration_since(later), Duration::ZERO);
        assert_eq!(Time::MAX.saturating_add(Duration::from_secs(1)), Time::MAX);
        assert_eq!(format!("{}", Time::from_nanos(1_000_000_123)), "1.000000123s");
    }
}
