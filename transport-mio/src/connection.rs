//! One TCP stream joined to one [`Link`].
//!
//! A readiness event is handled in three moves: read until the socket would block, feeding
//! every piece to the session; pump the link once (so everything that arrived in this event
//! goes to the storage thread as one batch, to be acked with one cumulative ack once it is
//! durable) and hand its storage requests over; write until the socket would block. A
//! storage completion is handled the same way. The mio interest is then derived from the
//! session: always readable while open, writable only while bytes wait.

use crate::storage::{Origin, Stage, Storage};
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use socketfalco_core::{Link, RequestId, Store, StoreReply};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};

/// Bytes read from the socket per `read` call.
const READ_CHUNK: usize = 64 * 1024;

/// What [`Connection::on_ready`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// The connection goes on.
    Open,
    /// The session is closed and everything it had to say is written (or can't be): drop
    /// the connection.
    Finished,
}

/// A TCP stream and the link it carries.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    token: Token,
    peer_addr: SocketAddr,
    link: Link,
    read_buf: Box<[u8]>,
    interest: Interest,
    write_failed: bool,
}

impl Connection {
    /// Registers `stream` for reading and writing (the hello is queued already).
    pub fn new(
        registry: &Registry,
        mut stream: TcpStream,
        token: Token,
        peer_addr: SocketAddr,
        link: Link,
    ) -> io::Result<Connection> {
        // Small frames must not wait for Nagle: a chat line is sent the moment it is typed.
        stream.set_nodelay(true)?;
        let interest = Interest::READABLE | Interest::WRITABLE;
        registry.register(&mut stream, token, interest)?;
        Ok(Connection {
            stream,
            token,
            peer_addr,
            link,
            read_buf: vec![0; READ_CHUNK].into_boxed_slice(),
            interest,
            write_failed: false,
        })
    }

    /// The link, for composing messages and reading notices.
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// The link, for composing messages and reading notices.
    pub fn link_mut(&mut self) -> &mut Link {
        &mut self.link
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// The token this connection is registered under.
    pub fn token(&self) -> Token {
        self.token
    }

    /// Reads what is there, pumps the link once, hands its storage requests over, writes
    /// what it can.
    pub fn on_ready<S: Store + Send + 'static>(
        &mut self,
        registry: &Registry,
        storage: &Storage<S>,
        now_ms: u64,
    ) -> Progress {
        self.read_available(now_ms);
        self.link.pump(now_ms);
        self.after_command(registry, storage, now_ms);
        self.progress()
    }

    /// Handles a due timer: keepalive, dead peer, stalled handshake.
    pub fn on_timeout<S: Store + Send + 'static>(
        &mut self,
        registry: &Registry,
        storage: &Storage<S>,
        now_ms: u64,
    ) -> Progress {
        self.link.handle_timeout(now_ms);
        self.link.pump(now_ms);
        self.after_command(registry, storage, now_ms);
        self.progress()
    }

    /// Hands a storage completion to the link (which pumps), then goes on as after input.
    /// A [`Stage::Written`] one (lines numbered in a group still committing) only lets the
    /// link send them; the request's durable completion follows.
    pub fn on_completion<S: Store + Send + 'static>(
        &mut self,
        registry: &Registry,
        storage: &Storage<S>,
        id: RequestId,
        result: Result<StoreReply, String>,
        stage: Stage,
        now_ms: u64,
    ) -> Progress {
        let taken = match (stage, result) {
            (Stage::Written, Ok(StoreReply::Composed(messages))) => {
                self.link.handle_store_written(id, &messages, now_ms)
            }
            (Stage::Written, _) => Ok(()),
            (Stage::Durable, result) => self.link.handle_store_completion(id, result, now_ms),
        };
        if let Err(e) = taken {
            log::error!("storage completion refused: {e}");
        }
        self.after_command(registry, storage, now_ms);
        self.progress()
    }

    /// Hands the link's storage requests over, writes what a command (compose, close)
    /// queued, and updates the interest.
    pub fn after_command<S: Store + Send + 'static>(
        &mut self,
        registry: &Registry,
        storage: &Storage<S>,
        now_ms: u64,
    ) {
        while let Some((id, request)) = self.link.poll_store_request() {
            storage.submit(Origin::Link(self.token), id, request);
        }
        self.write_available(now_ms);
        let wants_write = self.link.wants_write() && !self.write_failed;
        let interest = if wants_write {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        if interest != self.interest
            && registry
                .reregister(&mut self.stream, self.token, interest)
                .is_ok()
        {
            self.interest = interest;
        }
    }

    /// Moves the connection to another token, reading only (a connection that lingers
    /// after its session ended).
    pub fn retoken(&mut self, registry: &Registry, token: Token) {
        self.token = token;
        self.interest = Interest::READABLE;
        let _ = registry.reregister(&mut self.stream, token, Interest::READABLE);
    }

    /// Ends our direction of the stream, leaving the peer free to read what we sent.
    pub fn half_close(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Reads and discards what the peer still sends; true once it has closed (or failed).
    pub fn drain(&mut self) -> bool {
        loop {
            match self.stream.read(&mut self.read_buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
    }

    /// Deregisters and shuts the socket down.
    pub fn shutdown(mut self, registry: &Registry) {
        let _ = registry.deregister(&mut self.stream);
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    fn progress(&self) -> Progress {
        let write_failed =
            self.link.session().is_closed() && self.write_failed && !self.link.has_store_work();
        if self.link.is_finished() || write_failed {
            Progress::Finished
        } else {
            Progress::Open
        }
    }

    fn read_available(&mut self, now_ms: u64) {
        loop {
            if !self.link.wants_read() {
                return;
            }
            match self.stream.read(&mut self.read_buf) {
                Ok(0) => {
                    self.link.handle_eof(now_ms);
                    return;
                }
                Ok(n) => self.link.handle_input(&self.read_buf[..n], now_ms),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    // Reset, aborted: the stream is gone either way.
                    self.link.handle_eof(now_ms);
                    return;
                }
            }
        }
    }

    fn write_available(&mut self, now_ms: u64) {
        while !self.write_failed {
            let pending = self.link.poll_transmit(now_ms);
            if pending.is_empty() {
                return;
            }
            match self.stream.write(pending) {
                Ok(0) => self.fail_write(now_ms),
                Ok(n) => self.link.advance_transmit(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Not connected yet (a connect still in progress on some platforms): wait
                // for writability.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(_) => self.fail_write(now_ms),
            }
        }
    }

    fn fail_write(&mut self, now_ms: u64) {
        self.write_failed = true;
        self.link.handle_eof(now_ms);
    }
}
