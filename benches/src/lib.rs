//! Shared helpers for the SocketFalco benchmarks (`cargo bench -p socketfalco-benches`).
//!
//! The bench targets in `benches/benches/` measure what the protocol costs; these helpers
//! build the workloads so that every target measures the same thing the same way, and so
//! that each protocol figure has its ceiling — what the machine does with no protocol at
//! all — measured beside it in the same run. `docs/PERFORMANCE.md` reports the figures.
//!
//! # Layout
//! - [`data`]: the typical texts, messages and frames (a short chat line, a 4 KiB message,
//!   an ack) and long frame streams.
//! - [`memory`]: the core without I/O — two bare [`Session`](socketfalco_core::Session)s
//!   wired to each other ([`memory::SessionPair`]), two [`Link`](socketfalco_core::Link)s
//!   with stores ([`memory::LinkPair`]), and [`memory::BenchStore`], an in-memory store with
//!   O(1) calls (the harness's `MemoryStore` recomputes the chat head from every message on
//!   each compose, which makes long runs quadratic).
//! - [`alloc`]: a counting global allocator (current and peak heap bytes) for the re-sync
//!   bench's peak-memory figure.
//! - [`sqlite`]: the real store (`socketfalco::store::Database`) in a temporary folder, and a
//!   plain SQLite table with the same durability settings as its ceiling.
//! - [`net`]: two `transport-mio` endpoints over loopback in one process, and a plain
//!   loopback TCP pair (the ceiling).
//! - [`placement`]: the ceilings' two threads pinned on two CPUs or on one, so that their
//!   yardstick does not change with where the scheduler put them.
//! - [`stats`]: percentiles and the machine's load, printed beside criterion's figures.

pub mod alloc;
pub mod data;
pub mod memory;
pub mod net;
pub mod placement;
pub mod sqlite;
pub mod stats;
