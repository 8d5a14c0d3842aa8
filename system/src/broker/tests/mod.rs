//! Broker tests: a byte-level harness with fake clients, scenario tests named like the spec
//! rules they check, the bad-input table, and a property test over random client actions.
//!
//! This module owns test code only; it must never be compiled into the library.

mod bad_input;
mod harness;
mod model;
mod scenarios;
