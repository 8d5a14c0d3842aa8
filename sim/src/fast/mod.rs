//! The fast deterministic discrete-event engine: one thread, one seed, time jumps to the next
//! event, and the real protocol cores driven through virtual connections.
//!
//! This module owns the engine's building blocks (event queue, seeded streams, network model,
//! trace hash). It must never read a real clock, spawn a thread, or draw unseeded randomness.

pub mod net;
pub mod queue;
pub mod rng;
pub mod trace;

#[cfg(test)]
mod net_tests;
pub mod world;
