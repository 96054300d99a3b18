//! [`Pair`]: two devices, a simulated byte pipe each way, and a virtual clock.

use super::store::MemoryStore;
use socketfalco_core::{
    ComposeError, DeviceId, Link, Message, Notice, Role, SessionConfig, StaticKeypair, Store,
};
use std::collections::VecDeque;

/// Device id of the pair's first device.
pub const DEVICE_A: DeviceId = DeviceId([0xaa; 16]);
/// Device id of the pair's second device.
pub const DEVICE_B: DeviceId = DeviceId([0xbb; 16]);

/// One simulated device: its durable store and, while connected, its link.
#[derive(Debug)]
pub struct Device {
    /// The device id.
    pub id: DeviceId,
    /// Session settings for each new connection (name, temporary, window, timers).
    pub config: SessionConfig,
    /// The device's long-term static key (derived from its id, so runs are reproducible).
    pub keypair: StaticKeypair,
    /// What survives a crash.
    pub store: MemoryStore,
    /// The current connection, if any.
    pub link: Option<Link>,
    /// Every notice the device's link produced, in order (what its user saw).
    pub notices: Vec<Notice>,
}

impl Device {
    /// A device with an empty store, not connected.
    pub fn new(id: DeviceId, name: &str) -> Device {
        Device {
            id,
            config: SessionConfig::new(id, name),
            keypair: StaticKeypair::from_secret(
                [id.0, id.0.map(|b| b ^ 0x5a)]
                    .concat()
                    .try_into()
                    .unwrap_or([0x5a; 32]),
            ),
            store: MemoryStore::new(),
            link: None,
            notices: Vec::new(),
        }
    }

    /// Whether bytes for this device are handed to it: not while its link paused reading
    /// ([`Link::pause_reading`]), when they wait in the pipe as they would in a socket.
    fn reads(&self) -> bool {
        !self
            .link
            .as_ref()
            .is_some_and(|link| link.session().is_reading_paused() && !link.wants_read())
    }

    fn pump(&mut self, now_ms: u64) -> bool {
        let Some(link) = self.link.as_mut() else {
            return false;
        };
        // A store failure closes the session inside the link; the test sees the notice.
        let _ = link.pump_with(&mut self.store, now_ms);
        let mut any = false;
        while let Some(notice) = link.poll_notice() {
            self.notices.push(notice);
            any = true;
        }
        any
    }
}

/// One direction of the simulated connection: bytes in order, with latency, a largest
/// piece per delivery, and an optional cut after a number of bytes.
#[derive(Debug, Default)]
pub struct Pipe {
    queue: VecDeque<(u64, Vec<u8>)>,
    /// Delay between a write and its arrival.
    pub latency_ms: u64,
    /// Deliver at most this many bytes per piece (0: no limit).
    pub max_piece: usize,
    /// Let this many more bytes through, then break the connection.
    pub cut_after: Option<u64>,
    /// Drop every byte silently without breaking the connection (a peer that vanished
    /// without a word, a pulled cable).
    pub blackhole: bool,
    /// Flip the lowest bit of the byte at this offset of the stream (an attacker on the
    /// path, or a broken middlebox).
    pub flip_bit_at: Option<u64>,
    /// Bytes that went through so far.
    pub carried: u64,
}

impl Pipe {
    fn push(&mut self, bytes: &[u8], now_ms: u64) -> bool {
        if self.blackhole {
            return false;
        }
        let mut bytes = bytes;
        let mut cut = false;
        if let Some(left) = self.cut_after.as_mut() {
            let allowed = usize::try_from(*left)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            if allowed < bytes.len() {
                cut = true;
            }
            bytes = &bytes[..allowed];
            *left -= allowed as u64;
        }
        let mut flipped;
        if let Some(at) = self.flip_bit_at {
            if (self.carried..self.carried + bytes.len() as u64).contains(&at) {
                flipped = bytes.to_vec();
                flipped[usize::try_from(at - self.carried).unwrap_or(0)] ^= 1;
                bytes = &flipped;
                self.flip_bit_at = None;
            }
        }
        let piece = if self.max_piece == 0 {
            bytes.len().max(1)
        } else {
            self.max_piece
        };
        for chunk in bytes.chunks(piece) {
            self.queue
                .push_back((now_ms + self.latency_ms, chunk.to_vec()));
        }
        self.carried += bytes.len() as u64;
        cut
    }

    fn pop_due(&mut self, now_ms: u64) -> Option<Vec<u8>> {
        if self.queue.front().is_some_and(|(at, _)| *at <= now_ms) {
            self.queue.pop_front().map(|(_, bytes)| bytes)
        } else {
            None
        }
    }

    fn next_due(&self) -> Option<u64> {
        self.queue.front().map(|(at, _)| *at)
    }

    /// Whether bytes are on their way.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// Two devices, a connection between them that can come and go, and a virtual clock.
#[derive(Debug)]
pub struct Pair {
    /// The first device.
    pub a: Device,
    /// The second device.
    pub b: Device,
    /// The virtual clock, in milliseconds.
    pub now_ms: u64,
    /// Bytes from `a` to `b`.
    pub a_to_b: Pipe,
    /// Bytes from `b` to `a`.
    pub b_to_a: Pipe,
    /// Wall clock of device `a`, in Unix milliseconds (may be skewed against `b`).
    pub wall_a_ms: i64,
    /// Wall clock of device `b`, in Unix milliseconds.
    pub wall_b_ms: i64,
    /// Connections run the Noise handshake and encryption (the default, as in the product).
    pub secure: bool,
    /// Device `a` dials (initiates the handshake); false: `b` does.
    pub a_initiates: bool,
    /// Connections opened so far (seeds each connection's ephemeral keys).
    pub connections: u64,
}

impl Default for Pair {
    fn default() -> Self {
        Pair::new()
    }
}

impl Pair {
    /// Devices "alice" ([`DEVICE_A`]) and "bob" ([`DEVICE_B`]), empty stores, not connected.
    pub fn new() -> Pair {
        Pair {
            a: Device::new(DEVICE_A, "alice"),
            b: Device::new(DEVICE_B, "bob"),
            now_ms: 0,
            a_to_b: Pipe::default(),
            b_to_a: Pipe::default(),
            wall_a_ms: 1_700_000_000_000,
            wall_b_ms: 1_700_000_000_000,
            secure: true,
            a_initiates: true,
            connections: 0,
        }
    }

    /// Opens a fresh connection: new sessions on both sides, empty pipes (bytes of an old
    /// connection never reach a new one). Pipe knobs are kept.
    pub fn connect(&mut self) {
        self.connections += 1;
        let (role_a, role_b) = if self.a_initiates {
            (Role::Initiator, Role::Responder)
        } else {
            (Role::Responder, Role::Initiator)
        };
        let n = self.connections;
        self.a.link = Some(self.new_link(true, role_a, n));
        self.b.link = Some(self.new_link(false, role_b, n));
        self.a_to_b.queue.clear();
        self.b_to_a.queue.clear();
    }

    fn new_link(&self, a_side: bool, role: Role, connection: u64) -> Link {
        let device = if a_side { &self.a } else { &self.b };
        if !self.secure {
            return Link::new(device.config.clone(), self.now_ms);
        }
        let mut seed = [u8::from(a_side); 32];
        seed[..8].copy_from_slice(&connection.to_le_bytes());
        Link::new_secure(
            device.config.clone(),
            self.now_ms,
            role,
            &device.keypair,
            seed,
        )
    }

    /// Whether both devices have a link.
    pub fn is_connected(&self) -> bool {
        self.a.link.is_some() && self.b.link.is_some()
    }

    /// Whether both links are established.
    pub fn is_established(&self) -> bool {
        [&self.a, &self.b].iter().all(|d| {
            d.link
                .as_ref()
                .is_some_and(|l| l.session().is_established())
        })
    }

    /// The connection breaks: both sides see the stream end, bytes in flight are lost.
    pub fn disconnect(&mut self) {
        for device in [&mut self.a, &mut self.b] {
            if let Some(link) = device.link.as_mut() {
                link.handle_eof(self.now_ms);
            }
            device.pump(self.now_ms);
            device.link = None;
        }
        self.a_to_b.queue.clear();
        self.b_to_a.queue.clear();
    }

    /// Device `a` (if `a_side`) or `b` crashes: its link vanishes without another step
    /// (whatever it had not stored is gone), its store stays. The other side sees the
    /// stream end.
    pub fn crash(&mut self, a_side: bool) {
        let (crashed, other) = if a_side {
            (&mut self.a, &mut self.b)
        } else {
            (&mut self.b, &mut self.a)
        };
        crashed.link = None;
        if let Some(link) = other.link.as_mut() {
            link.handle_eof(self.now_ms);
        }
        other.pump(self.now_ms);
        other.link = None;
        self.a_to_b.queue.clear();
        self.b_to_a.queue.clear();
    }

    /// The user of `a` (if `a_side`) or `b` writes `text`: through the link when the peer
    /// is known, otherwise offline into the store.
    pub fn write(&mut self, a_side: bool, text: &str) -> Message {
        let (me, peer_id, wall) = if a_side {
            (&mut self.a, DEVICE_B, self.wall_a_ms)
        } else {
            (&mut self.b, DEVICE_A, self.wall_b_ms)
        };
        if let Some(link) = me.link.as_mut() {
            match link.compose_one_with(&mut me.store, text, wall, self.now_ms) {
                Ok(message) => return message,
                Err(ComposeError::NoPeer) => {}
                Err(e) => panic!("compose failed in the harness: {e}"),
            }
        }
        match me.store.compose(peer_id, text, wall) {
            Ok(message) => message,
            Err(e) => panic!("offline compose failed in the harness: {e}"),
        }
    }

    /// One round: each side transmits into its pipe, due bytes are delivered, both sides
    /// pump and handle due timers. Returns whether anything moved.
    pub fn step(&mut self) -> bool {
        let mut moved = false;
        let mut cut = false;
        for (device, pipe) in [
            (&mut self.a, &mut self.a_to_b),
            (&mut self.b, &mut self.b_to_a),
        ] {
            if let Some(link) = device.link.as_mut() {
                let bytes = link.poll_transmit(self.now_ms);
                if !bytes.is_empty() {
                    let n = bytes.len();
                    cut |= pipe.push(bytes, self.now_ms);
                    link.advance_transmit(n);
                    moved = true;
                }
            }
        }
        if cut {
            self.disconnect();
            return true;
        }
        for (pipe, device) in [
            (&mut self.a_to_b, &mut self.b),
            (&mut self.b_to_a, &mut self.a),
        ] {
            if !device.reads() {
                continue;
            }
            while let Some(bytes) = pipe.pop_due(self.now_ms) {
                moved = true;
                if let Some(link) = device.link.as_mut() {
                    link.handle_input(&bytes, self.now_ms);
                }
            }
        }
        for device in [&mut self.a, &mut self.b] {
            if let Some(link) = device.link.as_mut() {
                link.handle_timeout(self.now_ms);
            }
            moved |= device.pump(self.now_ms);
            // Bytes a pump queued (a store read it completed sent a line) go out next step.
            moved |= device.link.as_ref().is_some_and(Link::wants_write);
        }
        // A closed session whose last bytes are out ends the connection, as a driver would.
        let a_done = self.a.link.as_ref().is_some_and(finished);
        let b_done = self.b.link.as_ref().is_some_and(finished);
        if (a_done || b_done) && self.a_to_b.is_empty() && self.b_to_a.is_empty() {
            self.disconnect();
            moved = true;
        }
        moved
    }

    /// Steps until nothing moves, advancing the clock to pending deliveries but not to
    /// timers. Panics after `max_steps` (a livelock is a bug).
    pub fn drive(&mut self) {
        const MAX_STEPS: usize = 10_000_000;
        for _ in 0..MAX_STEPS {
            if self.step() {
                continue;
            }
            let next = [(&self.a_to_b, &self.b), (&self.b_to_a, &self.a)]
                .into_iter()
                .filter(|(_, receiver)| receiver.reads())
                .filter_map(|(pipe, _)| pipe.next_due())
                .min();
            match next {
                Some(at) if at > self.now_ms => self.now_ms = at,
                Some(_) => {}
                None => return,
            }
        }
        panic!("the pair did not settle within {MAX_STEPS} steps");
    }

    /// Advances the virtual clock by `ms`, stepping through every timer and delivery on
    /// the way.
    pub fn advance(&mut self, ms: u64) {
        let end = self.now_ms + ms;
        loop {
            self.drive();
            let next = [&self.a, &self.b]
                .iter()
                .filter_map(|d| d.link.as_ref().and_then(Link::poll_timeout))
                .min();
            match next {
                Some(at) if at <= end => self.now_ms = self.now_ms.max(at),
                _ => {
                    self.now_ms = end;
                    self.drive();
                    return;
                }
            }
        }
    }

    /// Connects and drives until the connection settles.
    pub fn connect_and_drive(&mut self) {
        self.connect();
        self.drive();
    }

    /// The chat as device `a` (if `a_side`) or `b` stores it, in display order.
    pub fn history(&self, a_side: bool) -> Vec<(DeviceId, Message)> {
        if a_side {
            self.a.store.history(DEVICE_A, DEVICE_B)
        } else {
            self.b.store.history(DEVICE_B, DEVICE_A)
        }
    }

    /// Own messages of `a` (if `a_side`) or `b` not yet known to be delivered.
    pub fn waiting(&self, a_side: bool) -> usize {
        if a_side {
            self.a.store.waiting(DEVICE_B)
        } else {
            self.b.store.waiting(DEVICE_A)
        }
    }
}

fn finished(link: &Link) -> bool {
    link.is_finished()
}
