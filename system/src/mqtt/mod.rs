//! MQTT 3.1.1 and 5.0 on the wire: the packet model, reason codes, the codec and topic rules.
//!
//! This module owns everything about MQTT as bytes and as data. It must never hold connection or
//! session state (that is `broker` and `client`) and never do I/O.

pub mod codec;
pub mod packet;
pub mod reason;
pub mod topic;

pub use packet::*;
pub use reason::ReasonCode;
