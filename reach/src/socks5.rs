//! The client side of a SOCKS5 CONNECT (RFC 1928), with username and password
//! authentication (RFC 1929), as a state machine that owns no socket: [`Socks5Client`] says
//! which bytes to write to the proxy and reads the proxy's answers in whatever pieces they
//! arrive. It owns the wire format of the three exchanges (method choice, optional
//! username/password, CONNECT request and reply) and the meaning of every answer, as
//! [`Socks5Error`].
//!
//! The proxy only ever answers what we sent: any byte that arrives before its turn is an
//! error, and only bytes after the final reply are handed on as the tunnelled stream's first
//! bytes ([`Socks5Client::take_leftover`]).

use crate::outbox::Outbox;
use crate::Handshake;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// The SOCKS protocol version byte.
const VERSION: u8 = 0x05;
/// The version byte of the username/password sub-negotiation (RFC 1929).
const AUTH_VERSION: u8 = 0x01;
/// Method: no authentication required.
const METHOD_NO_AUTH: u8 = 0x00;
/// Method: username/password (RFC 1929).
const METHOD_USER_PASS: u8 = 0x02;
/// The method choice that means "none of the offered methods is acceptable".
const METHOD_NONE_ACCEPTABLE: u8 = 0xFF;
/// Command: CONNECT.
const COMMAND_CONNECT: u8 = 0x01;
/// Address types of requests and replies.
const ATYP_IPV4: u8 = 0x01;
const ATYP_DOMAIN: u8 = 0x03;
const ATYP_IPV6: u8 = 0x04;
/// The reply code that means the connection is made.
const REPLY_SUCCEEDED: u8 = 0x00;

/// The longest host name, user name or password SOCKS5 can carry: each has a one-byte length.
pub const MAX_FIELD_LEN: usize = 255;

/// Where the proxy is asked to connect.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// A host name the proxy resolves (always the case for onion names), and a port.
    Domain(String, u16),
    /// An address already resolved.
    Ip(SocketAddr),
}

impl fmt::Display for Target {
    /// `host:port`, or `[v6]:port` for IPv6 addresses.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Domain(host, port) => write!(f, "{host}:{port}"),
            Target::Ip(address) => write!(f, "{address}"),
        }
    }
}

/// A username and password for the proxy (RFC 1929). Debug output hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// Why a SOCKS5 negotiation cannot go on. Every message describes the proxy's answer (or our
/// own oversize input); the caller adds which proxy and which target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Socks5Error {
    /// The target host name is empty or longer than 255 bytes.
    DomainLength { len: usize },
    /// The user name is empty or longer than 255 bytes.
    UsernameLength { len: usize },
    /// The password is empty or longer than 255 bytes.
    PasswordLength { len: usize },
    /// The proxy accepts none of the authentication methods offered.
    NoAcceptableMethod { credentials_offered: bool },
    /// The proxy refused the username and password (RFC 1929 status not 0).
    AuthenticationFailed,
    /// The CONNECT reply was not "succeeded". `meaning` is RFC 1928's text for `code`, or
    /// "unassigned reply code" for codes the RFC does not assign.
    Refused { code: u8, meaning: &'static str },
    /// The proxy's answer does not follow SOCKS5.
    Malformed(ProtocolViolation),
}

/// How a proxy's answer breaks SOCKS5.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolViolation {
    /// A version byte other than 0x05 in the method choice or the reply.
    Version(u8),
    /// A version byte other than 0x01 in the username/password status.
    AuthVersion(u8),
    /// The proxy chose a method we did not offer.
    UnofferedMethod(u8),
    /// The reply's reserved byte is not 0.
    Reserved(u8),
    /// The reply's address type is none of 0x01, 0x03, 0x04.
    AddressType(u8),
    /// The proxy sent bytes before it was its turn to answer.
    OutOfTurn,
}

/// RFC 1928's text for a reply code; "unassigned reply code" for 0x09..=0xFF (and
/// "succeeded" for 0x00).
pub fn reply_meaning(code: u8) -> &'static str {
    match code {
        0x00 => "succeeded",
        0x01 => "general SOCKS server failure",
        0x02 => "connection not allowed by ruleset",
        0x03 => "network unreachable",
        0x04 => "host unreachable",
        0x05 => "connection refused",
        0x06 => "TTL expired",
        0x07 => "command not supported",
        0x08 => "address type not supported",
        _ => "unassigned reply code",
    }
}

impl fmt::Display for Socks5Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Socks5Error::DomainLength { len } => {
                write!(
                    f,
                    "the target host name is {len} bytes long; SOCKS5 takes 1 to 255"
                )
            }
            Socks5Error::UsernameLength { len } => {
                write!(
                    f,
                    "the proxy user name is {len} bytes long; SOCKS5 takes 1 to 255"
                )
            }
            Socks5Error::PasswordLength { len } => {
                write!(
                    f,
                    "the proxy password is {len} bytes long; SOCKS5 takes 1 to 255"
                )
            }
            Socks5Error::NoAcceptableMethod {
                credentials_offered: false,
            } => write!(
                f,
                "the proxy wants authentication: give USER:PASS@ in the proxy URL"
            ),
            Socks5Error::NoAcceptableMethod {
                credentials_offered: true,
            } => write!(
                f,
                "the proxy accepts neither no authentication nor a username and password"
            ),
            Socks5Error::AuthenticationFailed => {
                write!(f, "the proxy refused the username and password")
            }
            Socks5Error::Refused { code, meaning } => {
                if *code > 0x08 {
                    write!(
                        f,
                        "the proxy refused the connection: unassigned reply code 0x{code:02x}"
                    )
                } else {
                    write!(
                        f,
                        "the proxy refused the connection: {meaning} (reply 0x{code:02x})"
                    )
                }
            }
            Socks5Error::Malformed(violation) => {
                write!(f, "the proxy's answer is not valid SOCKS5: {violation}")
            }
        }
    }
}

impl fmt::Display for ProtocolViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // 'H' is how an HTTP server's answer starts: a common mix-up of proxy kinds.
            ProtocolViolation::Version(b'H') => {
                write!(f, "it answered like an HTTP server, not a SOCKS5 proxy")
            }
            ProtocolViolation::Version(byte) => {
                write!(f, "version byte 0x{byte:02x} where 0x05 belongs")
            }
            ProtocolViolation::AuthVersion(byte) => {
                write!(
                    f,
                    "username/password status version 0x{byte:02x} where 0x01 belongs"
                )
            }
            ProtocolViolation::UnofferedMethod(method) => {
                write!(
                    f,
                    "it chose authentication method 0x{method:02x}, which was not offered"
                )
            }
            ProtocolViolation::Reserved(byte) => {
                write!(f, "reserved byte 0x{byte:02x} where 0x00 belongs")
            }
            ProtocolViolation::AddressType(atyp) => write!(f, "unknown address type 0x{atyp:02x}"),
            ProtocolViolation::OutOfTurn => write!(f, "it sent bytes before it was its turn"),
        }
    }
}

impl std::error::Error for Socks5Error {}

/// Which answer of the proxy comes next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// `05 METHOD`, the answer to the greeting.
    MethodChoice,
    /// `01 STATUS`, the answer to the username and password.
    AuthStatus,
    /// `05 REP 00 ATYP BND.ADDR BND.PORT`, the answer to the CONNECT request.
    Reply,
    /// The tunnel is open.
    Done,
}

/// One SOCKS5 CONNECT negotiation, from the greeting to the proxy's reply.
pub struct Socks5Client {
    target: Target,
    credentials: Option<Credentials>,
    step: Step,
    /// Bytes queued for the proxy.
    output: Outbox,
    /// The part of the current answer read so far.
    input: Vec<u8>,
    /// Bytes read after the final reply.
    leftover: Vec<u8>,
    /// The first error, returned again by every later `handle_input`.
    error: Option<Socks5Error>,
}

impl fmt::Debug for Socks5Client {
    /// Leaves out the byte buffers: the queued output may hold the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socks5Client")
            .field("target", &self.target)
            .field("credentials", &self.credentials)
            .field("step", &self.step)
            .field("pending_output_len", &self.pending_output().len())
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl Socks5Client {
    /// Validates lengths (domain 1..=255 bytes, username and password 1..=255 bytes each) and
    /// queues the greeting (methods: 0x00 no-auth, plus 0x02 when credentials are given).
    pub fn new(
        target: Target,
        credentials: Option<Credentials>,
    ) -> Result<Socks5Client, Socks5Error> {
        if let Target::Domain(host, _) = &target {
            if !field_len_ok(host) {
                return Err(Socks5Error::DomainLength { len: host.len() });
            }
        }
        if let Some(credentials) = &credentials {
            if !field_len_ok(&credentials.username) {
                return Err(Socks5Error::UsernameLength {
                    len: credentials.username.len(),
                });
            }
            if !field_len_ok(&credentials.password) {
                return Err(Socks5Error::PasswordLength {
                    len: credentials.password.len(),
                });
            }
        }
        let greeting = if credentials.is_some() {
            vec![VERSION, 2, METHOD_NO_AUTH, METHOD_USER_PASS]
        } else {
            vec![VERSION, 1, METHOD_NO_AUTH]
        };
        Ok(Socks5Client {
            target,
            credentials,
            step: Step::MethodChoice,
            output: Outbox::new(greeting),
            input: Vec::new(),
            leftover: Vec::new(),
            error: None,
        })
    }
}

impl Handshake for Socks5Client {
    type Error = Socks5Error;

    /// The bytes to write to the proxy now.
    fn pending_output(&self) -> &[u8] {
        self.output.pending()
    }

    /// `n` bytes of [`Handshake::pending_output`] were written (more than pending is
    /// taken as all of them).
    fn advance_output(&mut self, n: usize) {
        self.output.advance(n);
    }

    /// Feeds bytes read from the proxy (any split, byte by byte included). Once it has
    /// failed, every later call returns the same error. After the reply, bytes are kept for
    /// [`Handshake::take_leftover`].
    fn handle_input(&mut self, bytes: &[u8]) -> Result<(), Self::Error> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        if self.step == Step::Done {
            self.leftover.extend_from_slice(bytes);
            return Ok(());
        }
        self.input.extend_from_slice(bytes);
        let result = match self.step {
            Step::MethodChoice => self.read_method_choice(),
            Step::AuthStatus => self.read_auth_status(),
            Step::Reply => self.read_reply(),
            Step::Done => Ok(()),
        };
        if let Err(error) = &result {
            // Nothing more is to be sent or read once the negotiation failed.
            self.error = Some(error.clone());
            self.output.clear();
            self.input.clear();
        }
        result
    }

    /// Whether the CONNECT reply said "succeeded" (0x00) and was read whole.
    fn is_done(&self) -> bool {
        self.step == Step::Done
    }

    /// The bytes that arrived after the reply: they belong to the tunnelled stream.
    fn take_leftover(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.leftover)
    }
}

impl Socks5Client {
    /// `05 METHOD`: goes on to the request, or to the username and password.
    fn read_method_choice(&mut self) -> Result<(), Socks5Error> {
        let (version, method, extra) = match self.input.as_slice() {
            [version, method, rest @ ..] => (*version, *method, !rest.is_empty()),
            // `05` alone is checked at once, so a non-SOCKS server is told early.
            [version] if *version != VERSION => (*version, 0, false),
            _ => return Ok(()),
        };
        if version != VERSION {
            return Err(Socks5Error::Malformed(ProtocolViolation::Version(version)));
        }
        match (method, &self.credentials) {
            (METHOD_NO_AUTH, _) => {
                self.finish_answer(extra)?;
                self.queue_request();
            }
            (METHOD_USER_PASS, Some(credentials)) => {
                let auth = auth_request(credentials);
                self.finish_answer(extra)?;
                self.queue(&auth);
                self.step = Step::AuthStatus;
            }
            (METHOD_NONE_ACCEPTABLE, credentials) => {
                return Err(Socks5Error::NoAcceptableMethod {
                    credentials_offered: credentials.is_some(),
                });
            }
            (other, _) => {
                return Err(Socks5Error::Malformed(ProtocolViolation::UnofferedMethod(
                    other,
                )))
            }
        }
        Ok(())
    }

    /// `01 STATUS`: goes on to the request when the status is 0.
    fn read_auth_status(&mut self) -> Result<(), Socks5Error> {
        let (version, status, extra) = match self.input.as_slice() {
            [version, status, rest @ ..] => (*version, *status, !rest.is_empty()),
            [version] if *version != AUTH_VERSION => (*version, 0, false),
            _ => return Ok(()),
        };
        if version != AUTH_VERSION {
            return Err(Socks5Error::Malformed(ProtocolViolation::AuthVersion(
                version,
            )));
        }
        if status != 0 {
            return Err(Socks5Error::AuthenticationFailed);
        }
        self.finish_answer(extra)?;
        self.queue_request();
        Ok(())
    }

    /// `05 REP 00 ATYP BND.ADDR BND.PORT`: each byte is checked as soon as it is there, and
    /// the tunnel is open once the whole reply is read.
    fn read_reply(&mut self) -> Result<(), Socks5Error> {
        let input = self.input.as_slice();
        if let Some(&version) = input.first() {
            if version != VERSION {
                return Err(Socks5Error::Malformed(ProtocolViolation::Version(version)));
            }
        }
        if let Some(&code) = input.get(1) {
            if code != REPLY_SUCCEEDED {
                return Err(Socks5Error::Refused {
                    code,
                    meaning: reply_meaning(code),
                });
            }
        }
        if let Some(&reserved) = input.get(2) {
            if reserved != 0 {
                return Err(Socks5Error::Malformed(ProtocolViolation::Reserved(
                    reserved,
                )));
            }
        }
        let Some(&atyp) = input.get(3) else {
            return Ok(());
        };
        let address_len = match atyp {
            ATYP_IPV4 => 4,
            ATYP_IPV6 => 16,
            ATYP_DOMAIN => match input.get(4) {
                Some(&name_len) => 1 + usize::from(name_len),
                None => return Ok(()),
            },
            other => {
                return Err(Socks5Error::Malformed(ProtocolViolation::AddressType(
                    other,
                )))
            }
        };
        // Header, bound address, bound port.
        let reply_len = 4 + address_len + 2;
        let Some(after) = input.get(reply_len..) else {
            return Ok(());
        };
        self.leftover = after.to_vec();
        self.input.clear();
        self.step = Step::Done;
        Ok(())
    }

    /// Ends an intermediate answer: nothing may follow it before our next message.
    fn finish_answer(&mut self, extra: bool) -> Result<(), Socks5Error> {
        if extra {
            return Err(Socks5Error::Malformed(ProtocolViolation::OutOfTurn));
        }
        self.input.clear();
        Ok(())
    }

    /// Queues `05 01 00 ATYP DST.ADDR DST.PORT` and waits for the reply.
    fn queue_request(&mut self) {
        let request = connect_request(&self.target);
        self.queue(&request);
        self.step = Step::Reply;
    }

    fn queue(&mut self, bytes: &[u8]) {
        self.output.push(bytes);
    }
}

/// Whether a host name, user name or password fits a one-byte length and is not empty.
fn field_len_ok(field: &str) -> bool {
    (1..=MAX_FIELD_LEN).contains(&field.len())
}

/// The one-byte length of a field checked by [`field_len_ok`] in [`Socks5Client::new`].
fn len_byte(field: &str) -> u8 {
    u8::try_from(field.len()).unwrap_or(u8::MAX)
}

/// RFC 1929's `01 ULEN UNAME PLEN PASSWD`.
fn auth_request(credentials: &Credentials) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(3 + credentials.username.len() + credentials.password.len());
    bytes.push(AUTH_VERSION);
    bytes.push(len_byte(&credentials.username));
    bytes.extend_from_slice(credentials.username.as_bytes());
    bytes.push(len_byte(&credentials.password));
    bytes.extend_from_slice(credentials.password.as_bytes());
    bytes
}

/// RFC 1928's `05 01 00 ATYP DST.ADDR DST.PORT` for a CONNECT to `target`.
fn connect_request(target: &Target) -> Vec<u8> {
    let mut bytes = vec![VERSION, COMMAND_CONNECT, 0x00];
    let port = match target {
        Target::Domain(host, port) => {
            bytes.push(ATYP_DOMAIN);
            bytes.push(len_byte(host));
            bytes.extend_from_slice(host.as_bytes());
            *port
        }
        Target::Ip(address) => {
            match address.ip() {
                IpAddr::V4(ip) => {
                    bytes.push(ATYP_IPV4);
                    bytes.extend_from_slice(&ip.octets());
                }
                IpAddr::V6(ip) => {
                    bytes.push(ATYP_IPV6);
                    bytes.extend_from_slice(&ip.octets());
                }
            }
            address.port()
        }
    };
    bytes.extend_from_slice(&port.to_be_bytes());
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// A successful reply with the IPv4 bound address 10.0.0.1:4660.
    const REPLY_OK_V4: [u8; 10] = [0x05, 0x00, 0x00, 0x01, 10, 0, 0, 1, 0x12, 0x34];

    fn domain() -> Target {
        Target::Domain("example.org".into(), 443)
    }

    fn alice() -> Credentials {
        Credentials {
            username: "alice".into(),
            password: "s3cret".into(),
        }
    }

    /// Writes everything pending and returns it.
    fn drain(client: &mut Socks5Client) -> Vec<u8> {
        let bytes = client.pending_output().to_vec();
        client.advance_output(bytes.len());
        bytes
    }

    /// A client for `target` without credentials whose greeting was written, whose method
    /// choice (no authentication) was read and whose request was written.
    fn at_reply(target: Target) -> Socks5Client {
        let mut client = Socks5Client::new(target, None).unwrap();
        drain(&mut client);
        client.handle_input(&[0x05, 0x00]).unwrap();
        drain(&mut client);
        client
    }

    /// Feeds `bytes` one at a time, stopping at the first error.
    fn feed_bytewise(client: &mut Socks5Client, bytes: &[u8]) -> Result<(), Socks5Error> {
        bytes
            .iter()
            .try_for_each(|byte| client.handle_input(&[*byte]))
    }

    /// The CONNECT reply with code `code` and an IPv4 bound address.
    fn reply_with_code(code: u8) -> [u8; 10] {
        let mut reply = REPLY_OK_V4;
        reply[1] = code;
        reply
    }

    #[test]
    fn greeting_offers_user_pass_only_with_credentials() {
        let mut plain = Socks5Client::new(domain(), None).unwrap();
        assert_eq!(drain(&mut plain), [0x05, 0x01, 0x00]);
        let mut with_auth = Socks5Client::new(domain(), Some(alice())).unwrap();
        assert_eq!(drain(&mut with_auth), [0x05, 0x02, 0x00, 0x02]);
    }

    #[test]
    fn request_bytes_for_a_domain() {
        let mut client = Socks5Client::new(domain(), None).unwrap();
        drain(&mut client);
        client.handle_input(&[0x05, 0x00]).unwrap();
        let expected: &[u8] = &[
            0x05, 0x01, 0x00, 0x03, // CONNECT, domain
            11, b'e', b'x', b'a', b'm', b'p', b'l', b'e', b'.', b'o', b'r',
            b'g', // example.org
            0x01, 0xBB, // 443
        ];
        assert_eq!(drain(&mut client), expected);
    }

    #[test]
    fn request_bytes_for_an_ipv4_address() {
        let target = Target::Ip(SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1), 80)));
        let mut client = Socks5Client::new(target, None).unwrap();
        drain(&mut client);
        client.handle_input(&[0x05, 0x00]).unwrap();
        let expected: &[u8] = &[
            0x05, 0x01, 0x00, 0x01, // CONNECT, IPv4
            192, 0, 2, 1, // 192.0.2.1
            0x00, 0x50, // 80
        ];
        assert_eq!(drain(&mut client), expected);
    }

    #[test]
    fn request_bytes_for_an_ipv6_address() {
        let ip = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
        let mut client = Socks5Client::new(Target::Ip(SocketAddr::from((ip, 8080))), None).unwrap();
        drain(&mut client);
        client.handle_input(&[0x05, 0x00]).unwrap();
        let expected: &[u8] = &[
            0x05, 0x01, 0x00, 0x04, // CONNECT, IPv6
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, // 2001:db8::1
            0x1F, 0x90, // 8080
        ];
        assert_eq!(drain(&mut client), expected);
    }

    #[test]
    fn user_pass_subnegotiation_bytes_and_success() {
        let mut client = Socks5Client::new(domain(), Some(alice())).unwrap();
        drain(&mut client);
        client.handle_input(&[0x05, 0x02]).unwrap();
        let expected: &[u8] = &[
            0x01, // sub-negotiation version
            5, b'a', b'l', b'i', b'c', b'e', // alice
            6, b's', b'3', b'c', b'r', b'e', b't', // s3cret
        ];
        assert_eq!(drain(&mut client), expected);
        // No request before the status.
        assert!(client.pending_output().is_empty());
        client.handle_input(&[0x01, 0x00]).unwrap();
        assert_eq!(drain(&mut client)[..4], [0x05, 0x01, 0x00, 0x03]);
        client.handle_input(&REPLY_OK_V4).unwrap();
        assert!(client.is_done());
    }

    #[test]
    fn user_pass_refused() {
        let mut client = Socks5Client::new(domain(), Some(alice())).unwrap();
        drain(&mut client);
        client.handle_input(&[0x05, 0x02]).unwrap();
        drain(&mut client);
        let error = client.handle_input(&[0x01, 0x01]).unwrap_err();
        assert_eq!(error, Socks5Error::AuthenticationFailed);
        assert_eq!(
            error.to_string(),
            "the proxy refused the username and password"
        );
        assert!(client.pending_output().is_empty());
    }

    #[test]
    fn user_pass_status_with_wrong_version() {
        let mut client = Socks5Client::new(domain(), Some(alice())).unwrap();
        drain(&mut client);
        client.handle_input(&[0x05, 0x02]).unwrap();
        drain(&mut client);
        assert_eq!(
            client.handle_input(&[0x05]),
            Err(Socks5Error::Malformed(ProtocolViolation::AuthVersion(0x05)))
        );
    }

    #[test]
    fn no_acceptable_method_says_whether_credentials_were_offered() {
        let mut plain = Socks5Client::new(domain(), None).unwrap();
        let error = plain.handle_input(&[0x05, 0xFF]).unwrap_err();
        assert_eq!(
            error,
            Socks5Error::NoAcceptableMethod {
                credentials_offered: false
            }
        );
        assert!(error.to_string().contains("USER:PASS@"));

        let mut with_auth = Socks5Client::new(domain(), Some(alice())).unwrap();
        let error = with_auth.handle_input(&[0x05, 0xFF]).unwrap_err();
        assert_eq!(
            error,
            Socks5Error::NoAcceptableMethod {
                credentials_offered: true
            }
        );
        assert!(error.to_string().contains("neither"));
    }

    #[test]
    fn a_method_not_offered_is_malformed() {
        // User/pass chosen although no credentials were offered.
        let mut plain = Socks5Client::new(domain(), None).unwrap();
        assert_eq!(
            plain.handle_input(&[0x05, 0x02]),
            Err(Socks5Error::Malformed(ProtocolViolation::UnofferedMethod(
                0x02
            )))
        );
        // GSSAPI, never offered.
        let mut with_auth = Socks5Client::new(domain(), Some(alice())).unwrap();
        assert_eq!(
            with_auth.handle_input(&[0x05, 0x01]),
            Err(Socks5Error::Malformed(ProtocolViolation::UnofferedMethod(
                0x01
            )))
        );
    }

    #[test]
    fn every_reply_code() {
        let mut done = at_reply(domain());
        done.handle_input(&reply_with_code(0x00)).unwrap();
        assert!(done.is_done());

        let meanings = [
            "general SOCKS server failure",
            "connection not allowed by ruleset",
            "network unreachable",
            "host unreachable",
            "connection refused",
            "TTL expired",
            "command not supported",
            "address type not supported",
        ];
        for (code, meaning) in (0x01..=0x08).zip(meanings) {
            let mut client = at_reply(domain());
            let error = client.handle_input(&reply_with_code(code)).unwrap_err();
            assert_eq!(error, Socks5Error::Refused { code, meaning });
            assert_eq!(
                error.to_string(),
                format!("the proxy refused the connection: {meaning} (reply 0x{code:02x})")
            );
            assert!(!client.is_done());
        }
        assert_eq!(
            Socks5Error::Refused {
                code: 4,
                meaning: reply_meaning(4)
            }
            .to_string(),
            "the proxy refused the connection: host unreachable (reply 0x04)"
        );

        for code in [0x09, 0x7F, 0xFF] {
            let mut client = at_reply(domain());
            let error = client.handle_input(&reply_with_code(code)).unwrap_err();
            assert_eq!(
                error,
                Socks5Error::Refused {
                    code,
                    meaning: "unassigned reply code"
                }
            );
            assert_eq!(
                error.to_string(),
                format!("the proxy refused the connection: unassigned reply code 0x{code:02x}")
            );
        }
    }

    #[test]
    fn a_refusal_is_reported_as_soon_as_its_code_is_read() {
        let mut client = at_reply(domain());
        client.handle_input(&[0x05]).unwrap();
        assert!(matches!(
            client.handle_input(&[0x05]),
            Err(Socks5Error::Refused { code: 5, .. })
        ));
    }

    #[test]
    fn reply_address_types() {
        let v4 = REPLY_OK_V4.to_vec();
        let v6 = [&[0x05, 0x00, 0x00, 0x04][..], &[0xAB; 16], &[0x00, 0x50]].concat();
        let name = [&[0x05, 0x00, 0x00, 0x03, 4][..], b"host", &[0x00, 0x50]].concat();
        let empty_name = vec![0x05, 0x00, 0x00, 0x03, 0, 0x00, 0x50];
        for reply in [v4, v6, name, empty_name] {
            let mut whole = at_reply(domain());
            whole.handle_input(&reply).unwrap();
            assert!(whole.is_done(), "{reply:?}");
            assert!(whole.take_leftover().is_empty());

            let mut split = at_reply(domain());
            let (last, head) = reply.split_last().unwrap();
            feed_bytewise(&mut split, head).unwrap();
            assert!(!split.is_done(), "done one byte early: {reply:?}");
            split.handle_input(&[*last]).unwrap();
            assert!(split.is_done());
            assert!(split.take_leftover().is_empty());
        }
    }

    #[test]
    fn the_whole_negotiation_byte_by_byte() {
        let mut client = Socks5Client::new(domain(), Some(alice())).unwrap();
        drain(&mut client);
        feed_bytewise(&mut client, &[0x05, 0x02]).unwrap();
        drain(&mut client);
        feed_bytewise(&mut client, &[0x01, 0x00]).unwrap();
        drain(&mut client);
        feed_bytewise(&mut client, &REPLY_OK_V4).unwrap();
        assert!(client.is_done());
        assert!(client.pending_output().is_empty());
    }

    #[test]
    fn partial_writes_are_resumed() {
        let mut client = Socks5Client::new(domain(), Some(alice())).unwrap();
        assert_eq!(client.pending_output(), [0x05, 0x02, 0x00, 0x02]);
        client.advance_output(1);
        assert_eq!(client.pending_output(), [0x02, 0x00, 0x02]);
        client.advance_output(100);
        assert!(client.pending_output().is_empty());
    }

    #[test]
    fn bytes_after_the_reply_are_leftover() {
        let mut client = at_reply(domain());
        let mut bytes = REPLY_OK_V4.to_vec();
        bytes.extend_from_slice(b"hello");
        client.handle_input(&bytes).unwrap();
        assert!(client.is_done());
        client.handle_input(b" world").unwrap();
        assert_eq!(client.take_leftover(), b"hello world");
        assert!(client.take_leftover().is_empty());

        // Leftover after a domain-typed reply, which has a length byte.
        let mut client = at_reply(domain());
        let reply = [&[0x05, 0x00, 0x00, 0x03, 1, b'h', 0x00, 0x50][..], b"data"].concat();
        client.handle_input(&reply).unwrap();
        assert_eq!(client.take_leftover(), b"data");
    }

    #[test]
    fn truncated_answers_wait_for_more() {
        let mut client = Socks5Client::new(domain(), None).unwrap();
        drain(&mut client);
        client.handle_input(&[0x05]).unwrap();
        assert!(client.pending_output().is_empty());
        client.handle_input(&[0x00]).unwrap();
        drain(&mut client);
        for cut in 0..REPLY_OK_V4.len() {
            let mut client = at_reply(domain());
            client.handle_input(&REPLY_OK_V4[..cut]).unwrap();
            assert!(!client.is_done());
            client.handle_input(&REPLY_OK_V4[cut..]).unwrap();
            assert!(client.is_done());
        }
    }

    #[test]
    fn wrong_version_bytes() {
        let mut client = Socks5Client::new(domain(), None).unwrap();
        assert_eq!(
            client.handle_input(&[0x04]),
            Err(Socks5Error::Malformed(ProtocolViolation::Version(0x04)))
        );
        let mut http = Socks5Client::new(domain(), None).unwrap();
        let error = http
            .handle_input(b"HTTP/1.1 400 Bad Request\r\n")
            .unwrap_err();
        assert!(error.to_string().contains("HTTP"), "{error}");

        let mut client = at_reply(domain());
        assert_eq!(
            client.handle_input(&[0x04, 0x00]),
            Err(Socks5Error::Malformed(ProtocolViolation::Version(0x04)))
        );
    }

    #[test]
    fn reserved_byte_and_address_type() {
        let mut client = at_reply(domain());
        assert_eq!(
            client.handle_input(&[0x05, 0x00, 0x01]),
            Err(Socks5Error::Malformed(ProtocolViolation::Reserved(0x01)))
        );
        for atyp in [0x00, 0x02, 0x05, 0xFF] {
            let mut client = at_reply(domain());
            assert_eq!(
                client.handle_input(&[0x05, 0x00, 0x00, atyp]),
                Err(Socks5Error::Malformed(ProtocolViolation::AddressType(atyp)))
            );
        }
    }

    #[test]
    fn data_out_of_turn() {
        let out_of_turn = Err(Socks5Error::Malformed(ProtocolViolation::OutOfTurn));
        // The reply to the request arrives with the method choice, before the request.
        let mut client = Socks5Client::new(domain(), None).unwrap();
        drain(&mut client);
        let early: Vec<u8> = [&[0x05, 0x00][..], &REPLY_OK_V4].concat();
        assert_eq!(client.handle_input(&early), out_of_turn);
        // The same bytes one at a time are in turn: the method choice is complete before
        // the next byte, so the request is queued by then (a client cannot tell whether it
        // was written before the proxy answered, and does not try).
        let mut client = Socks5Client::new(domain(), None).unwrap();
        assert!(feed_bytewise(&mut client, &early).is_ok());
        // The status arrives with the method choice, before the username and password.
        let mut client = Socks5Client::new(domain(), Some(alice())).unwrap();
        assert_eq!(client.handle_input(&[0x05, 0x02, 0x01, 0x00]), out_of_turn);
        // Bytes after the status, before the request.
        let mut client = Socks5Client::new(domain(), Some(alice())).unwrap();
        client.handle_input(&[0x05, 0x02]).unwrap();
        assert_eq!(client.handle_input(&[0x01, 0x00, 0x05]), out_of_turn);
    }

    #[test]
    fn errors_are_sticky() {
        let mut client = at_reply(domain());
        let error = client.handle_input(&reply_with_code(0x03)).unwrap_err();
        assert_eq!(client.handle_input(&REPLY_OK_V4), Err(error.clone()));
        assert_eq!(client.handle_input(&[]), Err(error));
        assert!(!client.is_done());
    }

    #[test]
    fn oversize_and_empty_fields_are_refused_at_new() {
        let long = "a".repeat(256);
        let max = "a".repeat(255);
        assert_eq!(
            Socks5Client::new(Target::Domain(long.clone(), 80), None).unwrap_err(),
            Socks5Error::DomainLength { len: 256 }
        );
        assert_eq!(
            Socks5Client::new(Target::Domain(String::new(), 80), None).unwrap_err(),
            Socks5Error::DomainLength { len: 0 }
        );
        assert!(Socks5Client::new(Target::Domain(max.clone(), 80), None).is_ok());

        let user = |username: &str, password: &str| {
            Some(Credentials {
                username: username.into(),
                password: password.into(),
            })
        };
        assert_eq!(
            Socks5Client::new(domain(), user(&long, "p")).unwrap_err(),
            Socks5Error::UsernameLength { len: 256 }
        );
        assert_eq!(
            Socks5Client::new(domain(), user("u", &long)).unwrap_err(),
            Socks5Error::PasswordLength { len: 256 }
        );
        assert_eq!(
            Socks5Client::new(domain(), user("", "p")).unwrap_err(),
            Socks5Error::UsernameLength { len: 0 }
        );
        assert_eq!(
            Socks5Client::new(domain(), user("u", "")).unwrap_err(),
            Socks5Error::PasswordLength { len: 0 }
        );
        assert!(Socks5Client::new(domain(), user(&max, &max)).is_ok());
        // A 255-byte domain and 255-byte credentials go out with their exact length bytes.
        let mut client =
            Socks5Client::new(Target::Domain(max.clone(), 80), user(&max, &max)).unwrap();
        drain(&mut client);
        client.handle_input(&[0x05, 0x02]).unwrap();
        let auth = drain(&mut client);
        assert_eq!((auth.len(), auth[1], auth[257]), (3 + 255 + 255, 255, 255));
        client.handle_input(&[0x01, 0x00]).unwrap();
        let request = drain(&mut client);
        assert_eq!((request.len(), request[4]), (5 + 255 + 2, 255));
    }

    #[test]
    fn debug_hides_the_password_and_target_displays() {
        let debug = format!("{:?}", alice());
        assert!(
            debug.contains("alice") && !debug.contains("s3cret"),
            "{debug}"
        );
        // Also while the username and password are queued for the proxy.
        let mut client = Socks5Client::new(domain(), Some(alice())).unwrap();
        drain(&mut client);
        client.handle_input(&[0x05, 0x02]).unwrap();
        let debug = format!("{client:?}");
        assert!(
            !debug.contains("s3cret") && !debug.contains("115, 51"),
            "{debug}"
        );

        assert_eq!(domain().to_string(), "example.org:443");
        let v4 = Target::Ip(SocketAddr::from((Ipv4Addr::new(127, 0, 0, 1), 9050)));
        assert_eq!(v4.to_string(), "127.0.0.1:9050");
        let v6 = Target::Ip(SocketAddr::from((Ipv6Addr::LOCALHOST, 9050)));
        assert_eq!(v6.to_string(), "[::1]:9050");
    }
}
