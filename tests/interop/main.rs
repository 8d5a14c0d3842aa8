//! Interop tests of the real broker shell on loopback: third-party MQTT clients (rumqttc, the
//! mosquitto command-line tools), the `edgeproof broker` command's config errors, and the
//! shell's own bounds (connections limit, slow consumers).
//!
//! Every test starts its own broker on 127.0.0.1 with an ephemeral port and bounds every wait
//! with a tokio timeout, so the tests run in parallel and a hang fails instead of stalling CI.

mod cli_config;
mod cli_run;
mod client_shell;
mod mosquitto_clients;
mod rumqttc_clients;
mod shell_bounds;
mod support;
