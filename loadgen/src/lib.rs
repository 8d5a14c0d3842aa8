//! edgeproof-loadgen: the real-network device fleet (open-loop MQTT clients feeding the oracle).
//!
//! Not built yet: it arrives with its own issue. It must never depend on `sim`.
