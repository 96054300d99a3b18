//! An in-memory world for tests, the simulator, the fuzz targets and the benches.
//!
//! [`MemoryStore`] is a [`Store`](crate::store::Store) with the same durability contract as
//! the real SQLite store (every call is one atomic, durable commit). [`Pair`] puts two
//! devices, each a store plus an optional [`Link`](crate::link::Link), on the two ends of a
//! simulated byte pipe with a virtual clock, and has knobs to split, delay and cut the stream
//! and to crash a device. It is deterministic: the same calls give the same bytes. Like
//! quinn-proto's test `Pair`, every protocol test is a short story on top of it.
//! [`Wire`] is one direction of one connection exact to the byte (a cut at any byte, short
//! reads and writes, jitter that keeps order, a flipped bit), for the deterministic simulator
//! (`sim/`).

pub mod fuzz;
mod pair;
mod store;
mod wire;

pub use pair::{Device, Pair, Pipe, DEVICE_A, DEVICE_B};
pub use store::{MemoryChat, MemoryStore, MemoryStoreError};
pub use wire::{Wire, WireKnobs, WireRead, WireWrite};
