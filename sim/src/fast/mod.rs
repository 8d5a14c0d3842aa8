//! The fast deterministic discrete-event engine: one thread, one seed, time jumps to the next
//! event, and the real protocol cores driven through virtual connections.
//!
//! This module owns the engine's building blocks and the world built from them:
//! - [`queue`]: the event queue (a timer wheel; total order by time, then insertion sequence);
//! - [`rng`]: ChaCha8 sub-streams per purpose, derived from the run seed;
//! - [`trace`]: the running trace hash (word-wise FNV-1a) and the last events as text;
//! - [`net`]: hosts, links, partitions and TCP-like virtual connections;
//! - [`connections`]: connected clients, connects and reconnects per interval, for reports;
//! - [`world`]: a scenario's pods, fleets and subscribers driven to an `Outcome` ([`world::run_fast`]).
//!
//! It must never read a real clock (except the one wall-clock measurement documented in
//! [`world::run_fast`]), spawn a thread, or draw unseeded randomness.

pub mod connections;
pub mod net;
pub mod queue;
pub mod rng;
pub mod trace;
pub mod world;

#[cfg(test)]
mod net_tests;
