//! Shared helpers for the SocketFalco benchmarks.
