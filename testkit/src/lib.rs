//! The tools that prove SocketFalco's core, kept beside it rather than in it: the product
//! crate (`socketfalco-core`) holds only the protocol, and every crate that tests with these
//! takes this one as a dev-dependency (the simulator and the benches, which are themselves
//! test tools, as a dependency).
//!
//! [`MemoryStore`] is a [`Store`](socketfalco_core::Store) with the same durability contract
//! as the real SQLite store (every call is one atomic, durable commit). [`Pair`] puts two
//! devices, each a store plus an optional [`Link`](socketfalco_core::Link), on the two ends of
//! a simulated byte pipe with a virtual clock, and has knobs to split, delay and cut the
//! stream and to crash a device; its links carry their storage requests out at once
//! ([`Link::pump_with`](socketfalco_core::Link::pump_with)). It is deterministic: the same
//! calls give the same bytes. Like quinn-proto's test `Pair`, every protocol test is a short
//! story on top of it. [`Wire`] is one direction of one connection exact to the byte (a cut
//! at any byte, short reads and writes, jitter that keeps order, a flipped bit), for the
//! deterministic simulator (`sim/`). [`fuzz`] holds the fuzz targets' scripts and checks and
//! the metered allocator that bounds their heap; [`fuzz_reach`] the check of the `reach`
//! target (proxy and relay answers, pasted invites, proxy URLs and onion names). [`golden`]
//! reads the golden frames of `testdata/frames/`.

pub mod fuzz;
pub mod fuzz_reach;
pub mod golden;
mod pair;
mod slow;
mod store;
mod wire;

pub use pair::{Device, Pair, Pipe, DEVICE_A, DEVICE_B};
pub use slow::SlowCommits;
pub use store::{MemoryChat, MemoryStore, MemoryStoreError};
pub use wire::{Wire, WireKnobs, WireRead, WireWrite};
