//! Real sockets on loopback: two `transport-mio` endpoints in one process, and a plain TCP
//! pair with no protocol at all — the ceiling the endpoints are compared with — and the same
//! pair committing a row on each side per round trip, the durable round trip's floor.

use crate::data::{message, SHORT_LINE};
use crate::placement::{pin_current, Pinned, Placement};
use crate::sqlite::PlainTable;
use socketfalco_core::{DeviceId, SessionConfig, StaticKeypair, Store};
use socketfalco_testkit::{DEVICE_A, DEVICE_B};
use socketfalco_transport::{Command, Control, Endpoint, EndpointConfig, Output, Role};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long any single wait may take before the bench gives up (a hang is a bug).
pub const PATIENCE: Duration = Duration::from_secs(60);

/// One endpoint running its event loop on a thread of its own.
pub struct RunningEndpoint {
    /// Commands to it: the user's lines, quit.
    pub control: Control,
    /// Its outputs, except `Received` and `Sent` (one per message: counted, not queued).
    pub outputs: Receiver<Output>,
    /// Messages received (and stored) so far.
    pub received: Arc<AtomicU64>,
    thread: JoinHandle<Result<(), String>>,
}

impl RunningEndpoint {
    /// Starts an endpoint with `store`.
    pub fn start<S: Store + Send + 'static>(
        role: Role,
        config: EndpointConfig,
        store: S,
    ) -> RunningEndpoint {
        let (tx, outputs) = channel();
        let received = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&received);
        let (mut endpoint, control) = match Endpoint::new(role, config, store) {
            Ok(e) => e,
            Err(e) => panic!("endpoint: {e}"),
        };
        let thread = std::thread::spawn(move || {
            endpoint
                .run(|_, output| match output {
                    Output::Received { .. } => {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    Output::Sent { .. } => {}
                    other => {
                        let _ = tx.send(other);
                    }
                })
                .map_err(|e| e.to_string())
        });
        RunningEndpoint {
            control,
            outputs,
            received,
            thread,
        }
    }

    /// Waits for the first output that `pred` accepts, skipping the others.
    pub fn wait_for(&self, what: &str, pred: impl Fn(&Output) -> bool) -> Output {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.outputs.recv_timeout(left) {
                Ok(Output::Disconnected { reason, by, .. }) => {
                    panic!("waiting for {what}: disconnected by {by:?}: {reason}")
                }
                Ok(output) if pred(&output) => return output,
                Ok(_) => {}
                Err(e) => panic!("waiting for {what}: {e}"),
            }
        }
    }

    /// Waits until the peer holds our messages up to `seq`.
    pub fn wait_delivered(&self, seq: u64) {
        self.wait_for(
            "delivery",
            |o| matches!(o, Output::Delivered { up_to, .. } if *up_to >= seq),
        );
    }

    /// Quits and waits for the loop to end.
    pub fn quit(self) {
        self.control.send(Command::Quit);
        match self.thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("endpoint ended with: {e}"),
            Err(_) => eprintln!("endpoint thread panicked"),
        }
    }
}

fn endpoint_config(device: DeviceId, name: &str, secure: bool) -> EndpointConfig {
    let keypair = secure.then(|| {
        StaticKeypair::from_secret([device.0, device.0].concat().try_into().unwrap_or([7; 32]))
    });
    let mut config = EndpointConfig::new(SessionConfig::new(device, name), keypair);
    config.quit_grace_ms = 2_000;
    configure_from_env(&mut config);
    config
}

/// What the environment asks of a bench's endpoints, to compare the product with how it was:
/// `SOCKETFALCO_BENCH_SPREAD=1`, the loop and its storage thread wherever the scheduler puts
/// them, as before they shared one CPU; `SOCKETFALCO_BENCH_SLEEP=1`, the loop sleeps whenever
/// it waits, even for an answer due within microseconds, as before it spun for one
/// (docs/PERFORMANCE.md compares each pair).
pub fn configure_from_env(config: &mut EndpointConfig) {
    config.share_one_cpu = std::env::var_os("SOCKETFALCO_BENCH_SPREAD").is_none();
    if std::env::var_os("SOCKETFALCO_BENCH_SLEEP").is_some() {
        config.spin_for = std::time::Duration::ZERO;
    }
}

/// Alice listening on loopback, Bob connected to her, both established; with `secure`, the
/// connection runs the Noise handshake and encrypts everything (as the product does).
/// Returns `(alice, bob)`.
pub fn connected_endpoints<SA, SB>(
    store_a: SA,
    store_b: SB,
    secure: bool,
) -> (RunningEndpoint, RunningEndpoint)
where
    SA: Store + Send + 'static,
    SB: Store + Send + 'static,
{
    let bind: SocketAddr = "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!());
    let alice = RunningEndpoint::start(
        Role::Listen { bind },
        endpoint_config(DEVICE_A, "alice", secure),
        store_a,
    );
    let addr = match alice.wait_for("listening", |o| matches!(o, Output::Listening(_))) {
        Output::Listening(addr) => addr,
        _ => unreachable!(),
    };
    let bob = RunningEndpoint::start(
        Role::connect(vec![addr], addr.to_string()),
        endpoint_config(DEVICE_B, "bob", secure),
        store_b,
    );
    // The bench's thread types bob's lines and reads his outputs: his user interface, which
    // runs beside his loop as the binary's does.
    bob.control.share_cpu();
    bob.wait_for("bob connected", |o| matches!(o, Output::Connected { .. }));
    alice.wait_for("alice connected", |o| matches!(o, Output::Connected { .. }));
    (alice, bob)
}

/// A loopback TCP connection (TCP_NODELAY both ends) whose far end a thread of its own
/// serves with `serve`. Dropping it shuts the connection down and joins the thread.
struct LoopbackPeer {
    stream: TcpStream,
    thread: Option<JoinHandle<()>>,
    /// The near end's thread pinned (with a [`Placement`]) while this lives.
    _pinned: Option<Pinned>,
}

impl LoopbackPeer {
    fn start(serve: impl FnOnce(TcpStream) + Send + 'static) -> io::Result<LoopbackPeer> {
        LoopbackPeer::start_placed(None, serve)
    }

    /// As [`LoopbackPeer::start`], with the far end's thread and the calling (near) one on
    /// the CPUs `placement` gives, where threads can be pinned.
    fn start_placed(
        placement: Option<Placement>,
        serve: impl FnOnce(TcpStream) + Send + 'static,
    ) -> io::Result<LoopbackPeer> {
        let cpus = placement.and_then(Placement::cpus);
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let thread = std::thread::spawn(move || {
            let _pinned = cpus.map(|(_, far)| pin_current(far));
            if let Ok((stream, _)) = listener.accept() {
                let _ = stream.set_nodelay(true);
                serve(stream);
            }
        });
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(LoopbackPeer {
            stream,
            thread: Some(thread),
            _pinned: cpus.map(|(near, _)| pin_current(near)),
        })
    }
}

impl Drop for LoopbackPeer {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A plain loopback TCP connection (TCP_NODELAY both ends) whose far end, on its own thread,
/// reads everything and answers each `read` with the cumulative byte count so far (8 bytes):
/// one cumulative ack per readiness event, as the protocol does, and nothing else.
pub struct RawSink {
    peer: LoopbackPeer,
    sent: u64,
}

impl RawSink {
    /// Connects to a new sink thread.
    pub fn start() -> io::Result<RawSink> {
        let peer = LoopbackPeer::start(|mut stream| {
            let mut buf = vec![0u8; 64 * 1024];
            let mut total: u64 = 0;
            loop {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        total += n as u64;
                        if stream.write_all(&total.to_le_bytes()).is_err() {
                            return;
                        }
                    }
                }
            }
        })?;
        Ok(RawSink { peer, sent: 0 })
    }

    /// Writes `bytes` in `piece`-sized `write` calls, then waits until the sink acked them
    /// all.
    pub fn push(&mut self, bytes: &[u8], piece: usize) -> io::Result<()> {
        self.push_each(bytes.chunks(piece.max(1)))
    }

    /// Writes each of `pieces` with its own `write` call, then waits until the sink acked
    /// them all.
    pub fn push_each<'a>(&mut self, pieces: impl IntoIterator<Item = &'a [u8]>) -> io::Result<()> {
        let stream = &mut self.peer.stream;
        for piece in pieces {
            stream.write_all(piece)?;
            self.sent += piece.len() as u64;
        }
        let mut ack = [0u8; 8];
        loop {
            stream.read_exact(&mut ack)?;
            if u64::from_le_bytes(ack) >= self.sent {
                return Ok(());
            }
        }
    }
}

/// A plain loopback TCP connection whose far end answers every `request`-byte message with
/// a `reply`-byte one: the round-trip ceiling.
pub struct RawEcho {
    peer: LoopbackPeer,
    request: Vec<u8>,
    reply: Vec<u8>,
}

impl RawEcho {
    /// Connects to a new echo thread; with a `placement`, it and the calling thread (until
    /// this is dropped) run on the CPUs it gives.
    pub fn start(
        request: usize,
        reply: usize,
        placement: Option<Placement>,
    ) -> io::Result<RawEcho> {
        let peer = LoopbackPeer::start_placed(placement, move |mut stream| {
            let mut buf = vec![0u8; request];
            let answer = vec![0x5au8; reply];
            while stream.read_exact(&mut buf).is_ok() {
                if stream.write_all(&answer).is_err() {
                    return;
                }
            }
        })?;
        Ok(RawEcho {
            peer,
            request: vec![0xa5; request],
            reply: vec![0; reply],
        })
    }

    /// One round trip.
    pub fn round_trip(&mut self) -> io::Result<()> {
        self.peer.stream.write_all(&self.request)?;
        self.peer.stream.read_exact(&mut self.reply)
    }
}

/// The durable round trip's floor: a plain loopback TCP pair (64-byte request, 16-byte
/// reply) whose two ends each commit one row per round trip into a [`PlainTable`] of their
/// own, in two databases on the chats' disk, the way the product orders it — the near end
/// puts its request on the wire between its insert and its `COMMIT`, the far end commits
/// the request before it replies — with blocking sockets on two threads and nothing else:
/// no protocol, no event loop, no storage thread, no hand-off between threads on either side.
pub struct DurableEcho {
    peer: LoopbackPeer,
    table: PlainTable,
    request: Vec<u8>,
    reply: Vec<u8>,
    seq: u64,
}

impl DurableEcho {
    /// Creates the two tables under `dir` and connects to a new committing echo thread; with
    /// a `placement`, it and the calling thread (until this is dropped) run on the CPUs it
    /// gives.
    pub fn start(dir: &Path, placement: Option<Placement>) -> io::Result<DurableEcho> {
        let far_dir = dir.join("far");
        let near_dir = dir.join("near");
        std::fs::create_dir_all(&far_dir)?;
        std::fs::create_dir_all(&near_dir)?;
        let peer = LoopbackPeer::start_placed(placement, move |mut stream| {
            let mut table = PlainTable::create(&far_dir, "FULL");
            let mut buf = [0u8; 64];
            let answer = [0x5au8; 16];
            let mut seq = 0;
            while stream.read_exact(&mut buf).is_ok() {
                seq += 1;
                table.insert(&[message(seq, SHORT_LINE)]);
                if stream.write_all(&answer).is_err() {
                    return;
                }
            }
        })?;
        Ok(DurableEcho {
            peer,
            table: PlainTable::create(&near_dir, "FULL"),
            request: vec![0xa5; 64],
            reply: vec![0; 16],
            seq: 0,
        })
    }

    /// One round trip: both rows committed and the reply read.
    pub fn round_trip(&mut self) -> io::Result<()> {
        self.seq += 1;
        let mut sent = Ok(());
        let (stream, request) = (&mut self.peer.stream, &self.request);
        self.table
            .insert_then(&[message(self.seq, SHORT_LINE)], || {
                sent = stream.write_all(request)
            });
        sent?;
        self.peer.stream.read_exact(&mut self.reply)
    }
}
