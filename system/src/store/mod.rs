//! Durable storage built on the `Fs` seam, for the parts of the stack that must keep data across a
//! crash: durable broker sessions, the cluster's durable mode, store-and-forward buffers.
//!
//! This module owns the storage structures (today the segment [`log`]). They are sans-IO: each
//! emits [`DiskOp`](crate::fs::DiskOp)s and consumes [`DiskReply`](crate::fs::DiskReply)s, and
//! must never call an `Fs`, read a clock or spawn; whoever drives them (a service's driver, a test
//! loop) executes the requests.

pub mod log;

pub use log::{Log, LogConfig, LogConfigError, LogError, LogEvent, LogFailure, LogStats, RecordId};
