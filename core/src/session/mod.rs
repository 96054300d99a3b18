//! One connection between two devices, as a pure state machine.
//!
//! A [`Session`] owns nothing but protocol state: bytes come in through
//! [`Session::handle_input`], time through [`Session::handle_timeout`], and everything it wants
//! done comes out through `poll_*` calls. It never reads a clock, a socket or a file.
//!
//! The call order for a driver is in [`Session`]'s documentation; [`crate::link::Link`] is
//! the driver the product runs, against a [`crate::store::Store`].

mod state;

pub use state::{ApiMisuse, Event, PeerHello, Session, SessionConfig, Side};
