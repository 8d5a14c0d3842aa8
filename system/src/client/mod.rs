//! The sans-IO MQTT client core used by every client in the stack: simulated devices, dataflow
//! sources and sinks, the connector's publisher, loadgen.
//!
//! This module owns one client's protocol state: connect, subscribe, publish QoS 0/1/2 with an
//! inflight window and retransmission on reconnect, keep-alive and reconnect backoff with seeded
//! jitter. It must never do I/O, read a clock or draw unseeded randomness.
//!
//! SKELETON: signatures are the contract; the client helper replaces the bodies.
