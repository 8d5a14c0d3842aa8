//! Thin tokio shells that run the sans-IO cores on a [`crate::net::Net`].
//!
//! This module owns task wiring, socket reads and writes and timers. It must never contain
//! protocol decisions: everything MQTT happens in the cores.

pub mod broker;

pub use broker::{
    BrokerHandle, BrokerObserver, BrokerShellConfig, BrokerShellStats, BrokerShellStatsSnapshot, run_broker,
};
