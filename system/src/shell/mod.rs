//! Thin tokio shells that run the sans-IO cores on a [`crate::net::Net`].
//!
//! This module owns task wiring, socket reads and writes and timers. It must never contain
//! protocol decisions: everything MQTT happens in the cores.

pub mod broker;
pub mod client;
pub mod service;

pub use broker::{
    BrokerHandle, BrokerObserver, BrokerShellConfig, BrokerShellStats, BrokerShellStatsSnapshot, run_broker,
};
pub use client::{
    ClientHandle, ClientShellConfig, ClientShellError, ClientShellStats, ClientShellStatsSnapshot,
};
pub use service::{
    ServiceHost, ServiceShellConfig, ServiceShellStats, ServiceShellStatsSnapshot, run_service,
};
