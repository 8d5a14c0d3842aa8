//! edgeproof-scenarios: the scenario language, the device workload model, the payload stamp and
//! the delivery oracle (ledger, checkers, verdicts).
//!
//! It must never perform I/O beyond parsing text it is handed, and never depend on `sim` or
//! `loadgen`: both worlds use it alike.
