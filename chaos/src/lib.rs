//! edgeproof-chaos: the fault vocabulary shared by the simulators and the real executors.
//!
//! It owns what a fault *is* (`fault`); seeded swarm schedules and the real executors (a
//! fault-injecting TCP proxy, process control) arrive with their issues. It must never depend on
//! `sim` or `loadgen`.

pub mod fault;

pub use fault::{DiskFate, Fault, FaultAction, LatencyRange};
