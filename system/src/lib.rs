//! edgeproof-system: the edge data plane under test.
//!
//! It owns the MQTT codec, the sans-IO broker and client cores, and the thin tokio shells that run
//! them on real or turmoil sockets. It must never depend on the simulator, the oracle or any other
//! edgeproof crate, and its cores never read a clock, spawn a task or draw unseeded randomness:
//! `now` and every seed come in as arguments.

pub mod broker;
pub mod client;
pub mod fs;
pub mod mqtt;
pub mod net;
pub mod republisher;
pub mod service;
pub mod shell;
pub mod store;
pub mod time;

pub use time::{Clock, Time};
