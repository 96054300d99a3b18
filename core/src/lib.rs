//! The SocketFalco protocol core: a fully deterministic implementation of the chat protocol's
//! logic. It contains no networking code, no storage code, and gets no timestamps or
//! randomness from the operating system: bytes, time and random values come in as arguments,
//! and everything to be sent, stored or shown comes out as values. The same inputs always
//! give the same outputs.
//!
//! # Layout
//! - [`limits`]: every size limit and the protocol version, as named constants.
//! - [`ids`]: device ids (uuid4) and message ids (author + sequence number).
//! - [`message`]: a chat message, how the next one is numbered, how a chat is ordered, and
//!   the text and name rules.
//! - [`frame`]: the frames and their CBOR bodies.
//! - [`codec`]: length prefixes and the streaming [`FrameDecoder`] (bytes ↔ frames).
//! - [`secure`]: the Noise XX layer between the socket's bytes and the codec
//!   ([`SecureChannel`]), static keys and fingerprints.
//! - [`session`]: one connection as a state machine ([`Session`]): handshake, send, ack,
//!   re-sync, keepalive, close.
//! - [`store`]: the durability contract ([`Store`]) a driver's storage implements, and the
//!   storage requests ([`StoreRequest`]) a link asks a driver to carry out.
//! - [`link`]: a session joined to storage as an effect ([`Link`]): the driver logic every
//!   front end shares.
//!
//! The wire format, states and invariants are written down in `docs/PROTOCOL.md`.
//!
//! To add a frame kind: give it a kind byte and a body in [`frame`], a row in the state
//! table in [`session`], a golden file in `testdata/frames/`, and a section in
//! `docs/PROTOCOL.md`.

mod codec;
mod frame;
mod ids;
pub mod limits;
mod link;
mod message;
mod secure;
mod send_buffer;
mod session;
mod store;

pub use codec::{encode_frame, encode_message_frame, FrameDecoder};
pub use frame::{Close, CloseCode, Frame, FrameError, Hello, SyncPoint};
pub use ids::{DeviceId, ParseDeviceIdError};
pub use link::{ComposeError, Link, Notice, RequestId};
pub use message::{check_name, check_text, order_key, ChatHead, Message, NameError, TextError};
pub use secure::{format_fingerprint, parse_fingerprint, PublicKey, Role, StaticKeypair};
pub use session::{ApiMisuse, Event, PeerHello, Session, SessionConfig, Side};
pub use store::{
    execute, key_verdict, ChatOpening, ChatResume, KeyVerdict, Store, StoreReply, StoreRequest,
};
