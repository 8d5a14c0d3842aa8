//! edgeproof-chaos: the fault vocabulary shared by the simulators and the real executors.
//!
//! It must never depend on `sim` or `loadgen`.
