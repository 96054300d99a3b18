//! The SocketFalco protocol core: a fully deterministic implementation of the chat protocol's
//! logic. It contains no networking code, no storage code, and gets no timestamps or
//! randomness from the operating system: bytes, time and random values come in as arguments,
//! and everything to be sent, stored or shown comes out as values. The same inputs always
//! give the same outputs.
//!
//! # Layout
//! - `limits`: every size limit and the protocol version, as named constants ([`limits`]).
//! - `ids`: device ids (uuid4).
//! - `message`: a chat message, how the next one is numbered, how a chat is ordered, and
//!   the text and name rules.
//! - `frame`: the frames and their CBOR bodies.
//! - `codec`: length prefixes and the streaming [`FrameDecoder`] (bytes ↔ frames).
//! - `secure`: the Noise XX layer between the socket's bytes and the codec, static keys and
//!   fingerprints.
//! - `session`: one connection as a state machine ([`Session`]): handshake, send, ack,
//!   re-sync, keepalive, close.
//! - `store`: the durability contract ([`Store`]) a driver's storage implements, and the
//!   storage requests ([`StoreRequest`]) a link asks a driver to carry out.
//! - `link`: a session joined to storage as an effect ([`Link`]): the driver logic every
//!   front end shares.
//!
//! The wire format, states and invariants are written down in `docs/PROTOCOL.md`.
//!
//! To add a frame kind: give it a kind byte and a body in `frame`, a row in the state table
//! in `session`, a golden file in `testdata/frames/`, and a section in `docs/PROTOCOL.md`.
//!
//! # The public API
//!
//! Public is what another crate of the workspace needs — the binary (`cli/`), the transport,
//! the simulator, the testkit, the benches and the fuzz targets — and nothing else: every
//! module but [`limits`] is private, and what is public is re-exported here, once. 55 items:
//! 16 structs, 15 enums, 1 trait, 9 functions, 13 constants and the `limits` module, with
//! 72 inherent methods (and the trait's 13).
//!
//! | from | structs | enums | traits | functions | constants | methods | who needs them, and why |
//! | --- | --- | --- | --- | --- | --- | --- | --- |
//! | `link` | 2 | 2 | | | | 29 | every driver (the transport, the testkit's `Pair`, the simulator, the benches): [`Link`] is the one way the product runs a connection |
//! | `session` | 3 | 3 | | | | 28 | drivers configure sessions ([`SessionConfig`]) and read them through [`Link::session`]; the fuzz scripts and the benches drive a bare [`Session`] |
//! | `store` | 1 | 4 | 1 | 2 | | 1 + 13 | every store (the binary's SQLite, the testkit's `MemoryStore`, the simulator's disk) implements [`Store`]; the transport's storage thread and the simulator carry out [`StoreRequest`]s with [`execute`] |
//! | `message` | 2 | 2 | | 3 | | 2 | the binary and every store: texts, names and the order of a chat |
//! | `ids` | 2 | | | | | 1 | everyone: a device is named by its [`DeviceId`] |
//! | `secure` | 2 | 1 | | 2 | | 5 | the binary's keys, fingerprints and trust commands; the transport's encrypted links ([`Role`], [`StaticKeypair`]) |
//! | `frame` | 3 | 3 | | | | 3 | [`Close`] and [`CloseCode`]: the binary and the transport end sessions; the frames themselves: the simulator, the fuzz scripts and the benches, which write and read the wire as a peer does |
//! | `codec` | 1 | | | 2 | | 3 | the simulator, the fuzz scripts and the benches (encode and decode frames) |
//! | [`limits`] (public module) | | | | | 13 | | the binary (name and text limits), the simulator and the fuzz checks (memory and counter bounds); the limits that public items' contracts name |
//!
//! Two cargo features add to it, for test tools only: `simulator-self-test` (the simulator's
//! deliberately broken link) and `testing` (hooks that reach past a link into its session,
//! and getters only tests read), which the testkit enables. A build of the binary alone
//! (`cargo build -p socketfalco`, `cargo install`) has neither; cargo turns them on only
//! where a test tool is built beside it (the workspace's tests, a workspace-wide build).

// `pub` means public: an item no other crate can reach is `pub(crate)` or private.
#![warn(unreachable_pub)]

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
pub use link::{ComposeError, Link, Notice, OwnLinesShown, RequestId};
pub use message::{check_name, check_text, order_key, ChatHead, Message, NameError, TextError};
pub use secure::{format_fingerprint, parse_fingerprint, PublicKey, Role, StaticKeypair};
pub use session::{ApiMisuse, Event, PeerHello, Session, SessionConfig, Side};
pub use store::{
    execute, key_verdict, ChatOpening, ChatResume, KeyVerdict, Store, StoreReply, StoreRequest,
};
