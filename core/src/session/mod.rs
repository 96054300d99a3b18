//! One connection between two devices, as a pure state machine.
//!
//! A [`Session`] owns nothing but protocol state: bytes come in through
//! [`Session::handle_input`], time through [`Session::handle_timeout`], and everything it wants
//! done comes out through `poll_*` calls. It never reads a clock, a socket or a file.
//!
//! # Call order for a driver
//! 1. Create it with [`Session::new`]; it has already queued its hello.
//! 2. Feed what arrives: [`handle_input`](Session::handle_input) with bytes,
//!    [`handle_eof`](Session::handle_eof) when the peer closes the stream,
//!    [`handle_timeout`](Session::handle_timeout) when [`poll_timeout`](Session::poll_timeout)
//!    is reached.
//! 3. Drain [`poll_event`](Session::poll_event) and act on each [`Event`]: accept the peer,
//!    persist received messages and then [`confirm_persisted`](Session::confirm_persisted),
//!    record deliveries.
//! 4. Give it outgoing messages with [`send`](Session::send) while
//!    [`send_capacity`](Session::send_capacity) is above zero, in sequence from
//!    [`next_send_seq`](Session::next_send_seq).
//! 5. Write [`poll_transmit`](Session::poll_transmit) to the socket and report how much went
//!    out with [`advance_transmit`](Session::advance_transmit).
//! 6. Once [`is_closed`](Session::is_closed) and nothing is left to transmit, close the
//!    socket.
//!
//! [`crate::link::Link`] does steps 3 and 4 against a [`crate::store::Store`].

mod state;

pub use state::{ApiMisuse, Event, PeerHello, Session, SessionConfig, Side};
