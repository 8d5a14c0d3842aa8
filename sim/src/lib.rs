//! edgeproof-sim: the deterministic worlds that run the stack's cores from one seed.
//!
//! It must never read a real clock, draw unseeded randomness, or iterate default-hashed maps.

pub mod disk;
pub mod fast;
pub mod turmoil_net;
pub mod turmoil_world;

pub use turmoil_net::TurmoilNet;
pub use turmoil_world::{TurmoilError, TurmoilOptions, TurmoilRun, run_turmoil};
