//! The `--proxy` URL: `socks5h://[USER:PASS@]HOST:PORT` (names resolved by the proxy, as Tor
//! needs) or `socks5://…` (names resolved here), parsed into a [`ProxySpec`], printed back
//! without the password, and turned into the SOCKS [`Target`] for the host a peer is reached
//! at ([`ProxySpec::target_for`]).

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use crate::onion::is_onion_host;
use crate::socks5::{Credentials, Target, MAX_FIELD_LEN};

/// Tor's SOCKS port on the local machine, names resolved by Tor.
pub const TOR_PROXY: &str = "socks5h://127.0.0.1:9050";

/// The forms a proxy URL may take, for error messages.
const ACCEPTED_FORMS: &str =
    "use socks5h://[USER:PASS@]HOST:PORT, or socks5:// to resolve names here";

/// A SOCKS5 proxy and how to use it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxySpec {
    /// A host name, an IPv4 address, or an IPv6 address without brackets.
    pub host: String,
    pub port: u16,
    /// `socks5h`: the proxy resolves host names (needed for onion names and to keep DNS
    /// lookups off the local network).
    pub remote_dns: bool,
    pub credentials: Option<Credentials>,
}

/// What is wrong with a proxy URL. Messages never contain the password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxyUrlError {
    /// No `scheme://`.
    MissingScheme,
    /// A scheme other than socks5h or socks5 (the scheme, shortened and printable).
    UnsupportedScheme(String),
    /// Nothing between `//` (or `@`) and `:PORT`.
    EmptyHost,
    /// A host with characters no host name has (the host, shortened and printable).
    BadHost(String),
    /// An IPv6 address without brackets.
    UnbracketedIpv6,
    /// Something in brackets that is no IPv6 address.
    BadIpv6(String),
    /// No `:PORT` after the host.
    MissingPort,
    /// A port that is not a number from 1 to 65535 (as written, shortened and printable).
    BadPort(String),
    /// A path, query or fragment after the port.
    Path,
    /// `USER@` without `:PASS`.
    MissingPassword,
    /// A user name or password of 0 or more than 255 bytes after decoding.
    CredentialLength { field: &'static str, len: usize },
    /// A `%` not followed by two hex digits, or escapes that decode to no UTF-8 text.
    BadEscape { field: &'static str },
}

impl fmt::Display for ProxyUrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyUrlError::MissingScheme => write!(f, "the proxy URL has no scheme"),
            ProxyUrlError::UnsupportedScheme(scheme) => {
                write!(f, "the proxy scheme {scheme:?} is not supported, only socks5h and socks5")
            }
            ProxyUrlError::EmptyHost => write!(f, "the proxy URL has no host"),
            ProxyUrlError::BadHost(host) => {
                write!(f, "the proxy host {host:?} has characters no host name has")
            }
            ProxyUrlError::UnbracketedIpv6 => {
                write!(f, "an IPv6 proxy address goes in brackets, as in [::1]:9050")
            }
            ProxyUrlError::BadIpv6(inside) => {
                write!(f, "the proxy host [{inside}] is not an IPv6 address")
            }
            ProxyUrlError::MissingPort => write!(f, "the proxy URL has no port"),
            ProxyUrlError::BadPort(port) => {
                write!(f, "the proxy port {port:?} is not a number from 1 to 65535")
            }
            ProxyUrlError::Path => {
                write!(f, "the proxy URL has something after the port (a path, query or fragment)")
            }
            ProxyUrlError::MissingPassword => {
                write!(f, "the proxy URL has a user name but no password")
            }
            ProxyUrlError::CredentialLength { field, len: 0 } => {
                write!(f, "the proxy {field} is empty; SOCKS5 takes 1 to 255 bytes")
            }
            ProxyUrlError::CredentialLength { field, len } => {
                write!(f, "the proxy {field} is {len} bytes long; SOCKS5 takes 1 to 255")
            }
            ProxyUrlError::BadEscape { field } => write!(
                f,
                "the proxy {field} has a bad %-escape (write %XX with two hex digits, for UTF-8 text)"
            ),
        }?;
        write!(f, "; {ACCEPTED_FORMS}")
    }
}

impl std::error::Error for ProxyUrlError {}

impl FromStr for ProxySpec {
    type Err = ProxyUrlError;

    /// Parses `socks5h://[USER:PASS@]HOST:PORT` or `socks5://…`: the scheme in any case, HOST
    /// a name, an IPv4 address or a bracketed IPv6 address, USER and PASS percent-decoded,
    /// PORT from 1 to 65535. One trailing `/` is allowed; anything else after the port is not.
    fn from_str(text: &str) -> Result<ProxySpec, ProxyUrlError> {
        let text = text.trim();
        let (scheme, rest) = text.split_once("://").ok_or(ProxyUrlError::MissingScheme)?;
        let remote_dns = if scheme.eq_ignore_ascii_case("socks5h") {
            true
        } else if scheme.eq_ignore_ascii_case("socks5") {
            false
        } else {
            return Err(ProxyUrlError::UnsupportedScheme(printable(scheme)));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        // The last `@` ends the user info, so an unescaped `@` in a password still works.
        let (user_info, host_port) = match rest.rsplit_once('@') {
            Some((user_info, host_port)) => (Some(user_info), host_port),
            None => (None, rest),
        };
        if host_port.contains(['/', '?', '#']) {
            return Err(ProxyUrlError::Path);
        }
        let (host, port) = split_host_port(host_port)?;
        let credentials = user_info.map(parse_credentials).transpose()?;
        Ok(ProxySpec {
            host,
            port,
            remote_dns,
            credentials,
        })
    }
}

impl fmt::Display for ProxySpec {
    /// The URL without the password (`socks5h://alice@127.0.0.1:9050`), for messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.remote_dns { "socks5h" } else { "socks5" };
        write!(f, "{scheme}://")?;
        if let Some(credentials) = &self.credentials {
            write!(f, "{}@", percent_encode(&credentials.username))?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl ProxySpec {
    /// Tor on this machine: [`TOR_PROXY`].
    pub fn tor() -> ProxySpec {
        ProxySpec {
            host: "127.0.0.1".to_string(),
            port: 9050,
            remote_dns: true,
            credentials: None,
        }
    }

    /// The SOCKS target for `host:port`: an IP literal (IPv6 with or without brackets) is
    /// always `Ip`; an onion name is always `Domain` (only the proxy can reach it); any other
    /// name is `Domain` with `remote_dns`, and None without it: the caller resolves the name
    /// and passes `Target::Ip`.
    pub fn target_for(&self, host: &str, port: u16) -> Option<Target> {
        let literal = host
            .strip_prefix('[')
            .and_then(|inner| inner.strip_suffix(']'))
            .unwrap_or(host);
        if let Ok(ip) = literal.parse::<IpAddr>() {
            return Some(Target::Ip(SocketAddr::new(ip, port)));
        }
        if self.remote_dns || is_onion_host(host) {
            return Some(Target::Domain(host.to_string(), port));
        }
        None
    }
}

/// Splits `HOST:PORT` or `[IPV6]:PORT`; the host is returned without brackets.
fn split_host_port(text: &str) -> Result<(String, u16), ProxyUrlError> {
    let (host, port) = if let Some(bracketed) = text.strip_prefix('[') {
        let (inside, after) = bracketed
            .split_once(']')
            .ok_or_else(|| ProxyUrlError::BadIpv6(printable(bracketed)))?;
        if inside.parse::<Ipv6Addr>().is_err() {
            return Err(ProxyUrlError::BadIpv6(printable(inside)));
        }
        let port = match after.strip_prefix(':') {
            Some(port) => port,
            None if after.is_empty() => return Err(ProxyUrlError::MissingPort),
            None => return Err(ProxyUrlError::BadHost(printable(text))),
        };
        (inside, port)
    } else {
        if text.is_empty() {
            return Err(ProxyUrlError::EmptyHost);
        }
        let (host, port) = text.rsplit_once(':').ok_or(ProxyUrlError::MissingPort)?;
        if host.contains(':') {
            return Err(ProxyUrlError::UnbracketedIpv6);
        }
        if host.is_empty() {
            return Err(ProxyUrlError::EmptyHost);
        }
        if !host.chars().all(|character| {
            character.is_ascii_alphanumeric() || matches!(character, '-' | '.' | '_')
        }) {
            return Err(ProxyUrlError::BadHost(printable(host)));
        }
        (host, port)
    };
    if port.is_empty() {
        return Err(ProxyUrlError::MissingPort);
    }
    // Digits only: `u16::from_str` would also take a leading `+`.
    let digits_only = port.bytes().all(|byte| byte.is_ascii_digit());
    match port.parse::<u16>() {
        Ok(number) if number != 0 && digits_only => Ok((host.to_string(), number)),
        _ => Err(ProxyUrlError::BadPort(printable(port))),
    }
}

/// `USER:PASS`, both percent-decoded and 1..=255 bytes.
fn parse_credentials(user_info: &str) -> Result<Credentials, ProxyUrlError> {
    let (username, password) = user_info
        .split_once(':')
        .ok_or(ProxyUrlError::MissingPassword)?;
    let username =
        percent_decode(username).ok_or(ProxyUrlError::BadEscape { field: "user name" })?;
    let password =
        percent_decode(password).ok_or(ProxyUrlError::BadEscape { field: "password" })?;
    for (field, value) in [("user name", &username), ("password", &password)] {
        if !(1..=MAX_FIELD_LEN).contains(&value.len()) {
            return Err(ProxyUrlError::CredentialLength {
                field,
                len: value.len(),
            });
        }
    }
    Ok(Credentials { username, password })
}

/// Decodes `%XX` escapes; None for a `%` without two hex digits or a result that is no UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%' {
            let [high, low, after @ ..] = tail else {
                return None;
            };
            bytes.push((hex_value(*high)? << 4) | hex_value(*low)?);
            rest = after;
        } else {
            bytes.push(byte);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|value| u8::try_from(value).ok())
}

/// Escapes every byte but RFC 3986's unreserved characters, so a printed URL parses back.
fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// `text` for an error message: at most 40 characters, control characters as `?`.
fn printable(text: &str) -> String {
    let mut shown: String = text
        .chars()
        .take(40)
        .map(|character| {
            if character.is_control() {
                '?'
            } else {
                character
            }
        })
        .collect();
    if text.chars().nth(40).is_some() {
        shown.push('…');
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn parse(text: &str) -> Result<ProxySpec, ProxyUrlError> {
        text.parse()
    }

    fn spec(host: &str, port: u16, remote_dns: bool) -> ProxySpec {
        ProxySpec {
            host: host.into(),
            port,
            remote_dns,
            credentials: None,
        }
    }

    fn with_user(mut spec: ProxySpec, username: &str, password: &str) -> ProxySpec {
        spec.credentials = Some(Credentials {
            username: username.into(),
            password: password.into(),
        });
        spec
    }

    #[test]
    fn tor() {
        assert_eq!(parse(TOR_PROXY), Ok(ProxySpec::tor()));
        assert_eq!(ProxySpec::tor().to_string(), TOR_PROXY);
    }

    #[test]
    fn accepted_forms() {
        assert_eq!(
            parse("socks5h://127.0.0.1:9050"),
            Ok(spec("127.0.0.1", 9050, true))
        );
        assert_eq!(
            parse("socks5://127.0.0.1:9050"),
            Ok(spec("127.0.0.1", 9050, false))
        );
        assert_eq!(
            parse("SOCKS5H://proxy.example.org:1080"),
            Ok(spec("proxy.example.org", 1080, true))
        );
        assert_eq!(
            parse("Socks5://localhost:1"),
            Ok(spec("localhost", 1, false))
        );
        assert_eq!(parse("socks5h://[::1]:9050"), Ok(spec("::1", 9050, true)));
        assert_eq!(
            parse("socks5h://[2001:db8::7]:65535"),
            Ok(spec("2001:db8::7", 65535, true))
        );
        assert_eq!(
            parse("  socks5h://host:9050/ \n"),
            Ok(spec("host", 9050, true))
        );
        assert_eq!(
            parse("socks5h://alice:s3cret@127.0.0.1:9050"),
            Ok(with_user(spec("127.0.0.1", 9050, true), "alice", "s3cret"))
        );
        assert_eq!(
            parse("socks5h://al%40ice:p%3Aw%2fd%25:@[::1]:9050"),
            Ok(with_user(spec("::1", 9050, true), "al@ice", "p:w/d%:"))
        );
        // An unescaped `@` in the password: the last `@` ends the user info.
        assert_eq!(
            parse("socks5://bob:a@b@host:1080"),
            Ok(with_user(spec("host", 1080, false), "bob", "a@b"))
        );
        assert_eq!(
            parse("socks5h://%C3%A9t%C3%A9:x@host:1"),
            Ok(with_user(spec("host", 1, true), "été", "x"))
        );
    }

    #[test]
    fn display_hides_the_password() {
        let proxy = parse("socks5h://alice:s3cret@127.0.0.1:9050").unwrap();
        assert_eq!(proxy.to_string(), "socks5h://alice@127.0.0.1:9050");
        assert!(!format!("{proxy:?}").contains("s3cret"));
        let proxy = parse("socks5://al%40ice:x@[::1]:1080").unwrap();
        assert_eq!(proxy.to_string(), "socks5://al%40ice@[::1]:1080");
        // What Display prints parses back (less the password).
        let again = parse(&proxy.to_string().replace('@', ":x@")).unwrap();
        assert_eq!(again, proxy);
    }

    #[test]
    fn refused_forms() {
        use ProxyUrlError::*;
        let cases: &[(&str, ProxyUrlError)] = &[
            ("127.0.0.1:9050", MissingScheme),
            ("http://127.0.0.1:8080", UnsupportedScheme("http".into())),
            (
                "socks4://127.0.0.1:1080",
                UnsupportedScheme("socks4".into()),
            ),
            ("socks5h://:9050", EmptyHost),
            ("socks5h://", EmptyHost),
            ("socks5h://user:pw@:9050", EmptyHost),
            ("socks5h://host", MissingPort),
            ("socks5h://host:", MissingPort),
            ("socks5h://[::1]", MissingPort),
            ("socks5h://host:0", BadPort("0".into())),
            ("socks5h://host:65536", BadPort("65536".into())),
            ("socks5h://host:+80", BadPort("+80".into())),
            ("socks5h://host:http", BadPort("http".into())),
            ("socks5h://host:9050/tor", Path),
            ("socks5h://host:9050?x=1", Path),
            ("socks5h://host:9050#top", Path),
            ("socks5h://host:9050//", Path),
            ("socks5h://::1:9050", UnbracketedIpv6),
            ("socks5h://[::g]:9050", BadIpv6("::g".into())),
            ("socks5h://[::1:9050", BadIpv6("::1:9050".into())),
            ("socks5h://[::1]9050", BadHost("[::1]9050".into())),
            ("socks5h://ex ample:9050", BadHost("ex ample".into())),
            ("socks5h://alice@host:9050", MissingPassword),
            (
                "socks5h://:pw@host:9050",
                CredentialLength {
                    field: "user name",
                    len: 0,
                },
            ),
            (
                "socks5h://alice:@host:9050",
                CredentialLength {
                    field: "password",
                    len: 0,
                },
            ),
            (
                "socks5h://al%4:pw@host:9050",
                BadEscape { field: "user name" },
            ),
            (
                "socks5h://alice:p%zz@host:9050",
                BadEscape { field: "password" },
            ),
            (
                "socks5h://alice:%ff@host:9050",
                BadEscape { field: "password" },
            ),
        ];
        for (text, error) in cases {
            assert_eq!(parse(text).as_ref(), Err(error), "{text}");
        }
        let long = "a".repeat(256);
        assert_eq!(
            parse(&format!("socks5h://{long}:pw@host:1")),
            Err(CredentialLength {
                field: "user name",
                len: 256
            })
        );
        assert_eq!(
            parse(&format!("socks5h://u:{long}@host:1")),
            Err(CredentialLength {
                field: "password",
                len: 256
            })
        );
    }

    #[test]
    fn error_messages_are_one_line_name_the_forms_and_hide_the_password() {
        let error = parse("http://127.0.0.1:8080").unwrap_err();
        assert_eq!(
            error.to_string(),
            "the proxy scheme \"http\" is not supported, only socks5h and socks5; \
             use socks5h://[USER:PASS@]HOST:PORT, or socks5:// to resolve names here"
        );
        for text in [
            "socks5h://alice:p%zz@host:9050",
            "socks5h://alice:secret@host:0",
            "x",
        ] {
            let message = parse(text).unwrap_err().to_string();
            assert!(
                !message.contains('\n') && !message.contains("secret") && !message.contains("zz")
            );
            assert!(
                message.contains("socks5h://[USER:PASS@]HOST:PORT"),
                "{message}"
            );
        }
        let long = parse(&format!("{}://h:1", "x\n".repeat(50)))
            .unwrap_err()
            .to_string();
        assert!(!long.contains('\n') && long.len() < 200, "{long}");
    }

    #[test]
    fn targets() {
        let remote = ProxySpec::tor();
        let local = spec("127.0.0.1", 1080, false);
        let onion = "duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad.onion";
        let v4 = Target::Ip(SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1), 4000)));
        let v6 = Target::Ip(SocketAddr::from((Ipv6Addr::LOCALHOST, 4000)));
        for proxy in [&remote, &local] {
            assert_eq!(proxy.target_for("192.0.2.1", 4000), Some(v4.clone()));
            assert_eq!(proxy.target_for("::1", 4000), Some(v6.clone()));
            assert_eq!(proxy.target_for("[::1]", 4000), Some(v6.clone()));
            assert_eq!(
                proxy.target_for(onion, 4000),
                Some(Target::Domain(onion.into(), 4000))
            );
        }
        assert_eq!(
            remote.target_for("peer.example.org", 4000),
            Some(Target::Domain("peer.example.org".into(), 4000))
        );
        assert_eq!(local.target_for("peer.example.org", 4000), None);
    }
}
