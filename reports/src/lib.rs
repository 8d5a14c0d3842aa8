//! edgeproof-reports: the result model and the HTML report renderer.
//!
//! Not built yet: it arrives with its own issue. It must never depend on `sim` or `loadgen`.
