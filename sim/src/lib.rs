//! The deterministic simulator of SocketFalco, in the manner of FoundationDB's and
//! TigerBeetle's: it runs two peers — the real `core` [`Link`](socketfalco_core::Link)s and
//! [`Session`](socketfalco_core::Session)s, encrypted with the real Noise channel as in the
//! product, over the [`MemoryStore`](socketfalco_testkit::MemoryStore) storage model,
//! which has the SQLite store's durability contract — over a simulated network and clock,
//! injects faults from a seeded PRNG (cuts at any byte, short reads and writes, delays,
//! crashes at any instant, disk failures, stores restored to an earlier committed state,
//! clock skew and jumps, role swaps, temporary sessions, flipped bits), and checks
//! invariants after every step.
//!
//! A seed reproduces a run exactly: there is no other source of randomness, no real clock,
//! no thread. A failing run is shrunk to the shortest trace that fails the same way and
//! printed as a scenario file, with a one-line command to replay it. Hand-written scenarios
//! live in `testdata/sim/`. How to run, replay and soak: `docs/SIMULATION.md`.
//!
//! # Layout
//! - [`rng`]: a splitmix64 PRNG of our own (no dependency, so seeds never change meaning).
//! - [`event`]: the [`Event`]s and [`Scenario`]s, and their one-event-per-line text format
//!   (`Display` and `FromStr` are inverses: a printed trace is a scenario file).
//! - [`gen`]: the random [`Generator`]: a seed becomes a trace, each fault with a weight.
//! - [`disk`]: a device's store seen through disk faults — failed writes, a process that
//!   dies between two commits — and the history of its committed states, for restores.
//! - [`storage`]: a device's storage thread: the links' storage requests queue up and are
//!   carried out at once, with delivery marks held back, or only at a `commit` event (some
//!   of them, of one connection only, while bytes flow and timers fire); a crash keeps a
//!   prefix of the queue durable and loses the rest.
//! - [`world`]: the [`World`] that applies events: two devices, two byte-exact
//!   [`Wire`](socketfalco_testkit::Wire)s, the clocks, rounds of transmit / receive /
//!   pump; memory bounds, temporary sessions and honest closes are checked here.
//! - [`oracle`]: the independent record of what users wrote (by text) and were told, how
//!   each author numbered its writes, and the invariants held against it.
//! - [`shrink`]: delta debugging down to the shortest failing trace.
//! - [`replay`]: replaying a scenario on a fresh world (the one loop every run goes through).
//! - `rounds`: the clock loop both worlds run — rounds until nothing moves, the clock moved
//!   to the next delivery, timers fired up to the end of an `advance-clock` — and its
//!   livelock limits.
//! - [`runner`]: running seeds, reports, the soak.
//! - [`listener`]: a second world, one listener serving two or three peers at once (several
//!   links on one store, a peer's new connection beside its old one), random runs checked by
//!   one [`Oracle`] per chat.
//!
//! The binary (`src/main.rs`) replays a seed, a scenario file or a one-line trace, and soaks.

pub mod disk;
pub mod event;
pub mod gen;
pub mod listener;
pub mod oracle;
pub mod replay;
pub mod rng;
mod rounds;
pub mod runner;
pub mod shrink;
pub mod storage;
pub mod world;

pub use event::{Event, Expectation, Options, Scenario, Who};
pub use gen::Generator;
pub use listener::{
    run_listener_seed, run_listener_seed_with, ListenerFailure, ListenerScenario, ListenerStats,
    ListenerWorld,
};
pub use oracle::{ChatStores, ChatView, Oracle, Violation};
pub use replay::{run, run_logged, Failure, Outcome};
pub use runner::{
    check_scenario, check_seed, run_seed, seeds_from_env, soak, Report, Soak, DEFAULT_SEEDS,
};
pub use storage::{StorageMode, StorageQueue, StorageStats};
pub use world::{Stats, World};
