//! edgeproof-scenarios: the scenario language, the device workload model, the payload stamp and
//! the delivery oracle (ledger, checkers, verdicts), and the agents: the engine-agnostic rules by
//! which any driver of device and subscriber client cores (both simulators, loadgen) fills the
//! ledger.
//!
//! It must never perform I/O beyond parsing text it is handed, and never depend on `sim` or
//! `loadgen`: both worlds use it alike.
//!
//! The flow of a run: parse a [`Scenario`] (or take one from the [`catalog`]), expand its
//! [`Workload`] for a seed, drive the world while recording into a [`Ledger`], then build an
//! [`Outcome`] which runs every checker and renders the verdict.

pub mod agents;
pub mod catalog;
pub mod checkers;
pub mod latency;
pub mod ledger;
pub mod outcome;
pub mod series;
pub mod spec;
pub mod stamp;
pub mod workload;

pub use checkers::Check;
pub use ledger::{Ledger, ObserverId};
pub use outcome::{Outcome, RunInfo};
pub use spec::{Scenario, ScenarioError};
pub use stamp::{STAMP_LEN, Stamp, StampError};
pub use workload::{DevicePlan, PlannedPublish, PublishSchedule, Workload};
