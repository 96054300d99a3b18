//! Drives a [`socketfalco_core::Link`] over non-blocking mio TCP sockets, on Linux and
//! Windows alike (only what mio and std offer on both).
//!
//! # Layout
//! - [`clock`]: the monotonic clock the core's timers run on, and the wall clock messages
//!   are stamped with.
//! - [`connection`]: one TCP stream joined to one link — read everything available, pump the
//!   link once per readiness event (one batch for the store, one ack once it is durable),
//!   hand its storage requests over, write until the socket would block, and derive the mio
//!   interest from what the session wants.
//! - [`route`]: how a caller reaches the listener — straight, through a SOCKS5 proxy, or
//!   through a transit relay — and the negotiation an indirect route runs before the Noise
//!   handshake.
//! - [`storage`]: the storage thread: the links' storage requests, many per durable commit
//!   (group commit), off the event loop, completions back through the loop's waker.
//! - [`affinity`]: the loop and its storage thread kept on one CPU while that CPU is theirs
//!   (Linux), so that their hand-offs wake no halted CPU.
//! - [`spin`]: while an answer is due within microseconds (an ack, a commit's completion),
//!   the loop polls instead of sleeping, so that the answer finds its CPU awake.
//! - [`backlog`]: how much of the endpoint's output waits for its reader; the endpoint
//!   stops reading from its peers while too much does.
//! - [`admission`]: who a listener at its limit lets in: the user's contacts before
//!   strangers.
//! - [`endpoint`]: the event loop: listen or connect, refuse a second caller as busy,
//!   reconnect with backoff after a drop, take the user's lines from another thread, and
//!   report everything as [`Output`] values.
//!
//! The user interface lives elsewhere: it sends [`Command`]s through a [`Control`] (which
//! wakes the loop) and receives [`Output`]s through a callback.

pub mod admission;
pub mod affinity;
pub mod backlog;
pub mod clock;
pub mod connection;
pub mod endpoint;
pub mod route;
pub mod spin;
pub mod storage;

pub use admission::Contacts;
pub use backlog::OutputBacklog;
pub use endpoint::{Command, Control, Endpoint, EndpointConfig, Output, Role};
pub use route::{ProxyRoute, RelayRoute, Route};
