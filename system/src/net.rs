//! The network seam of the tokio shells: how a shell listens and connects.
//!
//! This module owns the `Net` trait and its production implementation on tokio sockets. It must
//! never contain protocol logic; turmoil's implementation lives in `edgeproof-sim`.
