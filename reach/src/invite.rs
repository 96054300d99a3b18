//! Invites: one line of text a listener hands to the people who may call it, carrying its
//! static public key (so the first connection is already authenticated: no trust on first
//! use) and the routes to reach it (an onion service, a transit relay, a direct address).
//!
//! The text form is `sf1` followed by lowercase RFC 4648 base32 without padding of
//! `payload || checksum`, where checksum is the first 4 bytes of
//! `SHA-256("socketfalco invite v1" || payload)`. The payload is a version byte (1), the
//! 32-byte key, then fields `tag (1) len (1) bytes (len)`: tag 1 the onion route
//! (`<name>.onion:PORT`), 2 the relay (`HOST:PORT`), 3 the direct address (`HOST:PORT`), each
//! UTF-8 of 1 to 255 bytes without whitespace, each tag at most once (in tag order when
//! encoding; any order is read). The checksum's construction is the same for every version,
//! so an invite of a newer version is told apart from a damaged one.
//!
//! Sizes: an invite with only a key is 63 characters; one with a key and the relay
//! `relay.example.org:4001` is 101.

use std::fmt;

use data_encoding::BASE32_NOPAD;
use sha2::{Digest, Sha256};

/// How every invite starts (in any case when read).
pub const INVITE_PREFIX: &str = "sf1";
/// The length of the shortest invite, one with a key and no route.
pub const MIN_INVITE_LEN: usize = 63;

/// The shortest single label taken for an invite cut short ([`Invite::looks_like_invite`]).
pub const MIN_CUT_INVITE_LEN: usize = 12;
/// The payload version this code writes and reads.
const VERSION: u8 = 1;
/// The constant that starts the checksum's input.
const CHECKSUM_LABEL: &[u8] = b"socketfalco invite v1";
const CHECKSUM_LEN: usize = 4;
/// The most bytes a field holds: its length is one byte.
const MAX_FIELD_LEN: usize = 255;

/// A listener's key and the routes to it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Invite {
    /// The listener's static public key.
    pub key: [u8; 32],
    /// `<name>.onion:PORT`.
    pub onion: Option<String>,
    /// A transit relay, `HOST:PORT`.
    pub relay: Option<String>,
    /// A direct address, `HOST:PORT`.
    pub address: Option<String>,
}

/// The fields an invite may carry after its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InviteField {
    Onion,
    Relay,
    Address,
}

impl InviteField {
    /// All fields, in tag order.
    pub const ALL: [InviteField; 3] =
        [InviteField::Onion, InviteField::Relay, InviteField::Address];

    /// The field's tag byte.
    pub fn tag(self) -> u8 {
        match self {
            InviteField::Onion => 1,
            InviteField::Relay => 2,
            InviteField::Address => 3,
        }
    }

    /// The field with tag `tag`, if any.
    pub fn from_tag(tag: u8) -> Option<InviteField> {
        InviteField::ALL
            .into_iter()
            .find(|field| field.tag() == tag)
    }
}

impl fmt::Display for InviteField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InviteField::Onion => "onion route",
            InviteField::Relay => "relay",
            InviteField::Address => "address",
        })
    }
}

/// Why an invite cannot be written or read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InviteError {
    /// The text does not start with `sf1`.
    NotAnInvite,
    /// A character that is not base32, at a 1-based character position of the trimmed text.
    BadCharacter { character: char, position: usize },
    /// The checksum does not match, or the text's length cannot be base32 of anything.
    Damaged,
    /// A payload version this code does not know.
    UnsupportedVersion(u8),
    /// The checksum matches but the payload ends before the end of the key.
    MissingKey,
    /// A field tag this code does not know.
    UnknownTag(u8),
    /// A field tag that appears twice.
    DuplicateTag(u8),
    /// The payload ends inside a field.
    TruncatedField,
    /// A field that is not UTF-8.
    BadUtf8(InviteField),
    /// A field of 0 bytes.
    EmptyField(InviteField),
    /// A field of more than 255 bytes.
    FieldTooLong { field: InviteField, len: usize },
    /// A field containing whitespace or control characters.
    FieldWhitespace(InviteField),
}

impl fmt::Display for InviteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InviteError::NotAnInvite => {
                write!(f, "this is not a SocketFalco invite: invites start with {INVITE_PREFIX}")
            }
            InviteError::BadCharacter { character, position } => write!(
                f,
                "the invite has {character:?} at character {position}, which no invite has; copy it again"
            ),
            InviteError::Damaged => write!(f, "the invite is damaged: a typo or a cut? copy it again"),
            InviteError::UnsupportedVersion(version) => write!(
                f,
                "the invite was made by a newer SocketFalco (invite version {version}); update SocketFalco to use it"
            ),
            InviteError::MissingKey => {
                write!(f, "the invite holds no complete key; ask for a new invite")
            }
            InviteError::UnknownTag(tag) => write!(
                f,
                "the invite has a field this SocketFalco does not know (tag {tag}); it may be made by a newer SocketFalco"
            ),
            InviteError::DuplicateTag(tag) => {
                write!(f, "the invite has field {tag} twice; ask for a new invite")
            }
            InviteError::TruncatedField => {
                write!(f, "the invite ends inside a field; ask for a new invite")
            }
            InviteError::BadUtf8(field) => write!(f, "the invite's {field} is not UTF-8 text"),
            InviteError::EmptyField(field) => write!(f, "the invite's {field} is empty"),
            InviteError::FieldTooLong { field, len } => {
                write!(f, "the invite's {field} is {len} bytes long; at most {MAX_FIELD_LEN} fit")
            }
            InviteError::FieldWhitespace(field) => {
                write!(f, "the invite's {field} contains spaces or control characters")
            }
        }
    }
}

impl std::error::Error for InviteError {}

impl Invite {
    /// The invite's text: `sf1` and lowercase base32. Fields that are empty, longer than 255
    /// bytes, or contain whitespace or control characters are refused.
    pub fn encode(&self) -> Result<String, InviteError> {
        let mut payload = Vec::with_capacity(1 + 32 + 3 * (2 + 32));
        payload.push(VERSION);
        payload.extend_from_slice(&self.key);
        for field in InviteField::ALL {
            let Some(value) = self.field(field) else {
                continue;
            };
            check_field(field, value)?;
            payload.push(field.tag());
            payload.push(u8::try_from(value.len()).unwrap_or(u8::MAX));
            payload.extend_from_slice(value.as_bytes());
        }
        payload.extend_from_slice(&checksum(&payload));
        let mut text = String::from(INVITE_PREFIX);
        text.push_str(&BASE32_NOPAD.encode(&payload).to_ascii_lowercase());
        Ok(text)
    }

    /// Reads an invite: surrounding whitespace is trimmed and upper case accepted.
    pub fn decode(text: &str) -> Result<Invite, InviteError> {
        let text = text.trim();
        let prefix_len = INVITE_PREFIX.len();
        let body = match (text.get(..prefix_len), text.get(prefix_len..)) {
            (Some(prefix), Some(body)) if prefix.eq_ignore_ascii_case(INVITE_PREFIX) => body,
            _ => return Err(InviteError::NotAnInvite),
        };
        if let Some((index, character)) = body
            .chars()
            .enumerate()
            .find(|(_, character)| !is_base32(*character))
        {
            return Err(InviteError::BadCharacter {
                character,
                position: prefix_len + index + 1,
            });
        }
        // Base32 that no bytes encode to (an impossible length, or stray low bits in the
        // last character) is damage like a checksum mismatch.
        let bytes = BASE32_NOPAD
            .decode(body.to_ascii_uppercase().as_bytes())
            .map_err(|_| InviteError::Damaged)?;
        let split = bytes
            .len()
            .checked_sub(CHECKSUM_LEN)
            .ok_or(InviteError::Damaged)?;
        let (payload, sum) = bytes.split_at_checked(split).ok_or(InviteError::Damaged)?;
        if payload.is_empty() || checksum(payload) != sum {
            return Err(InviteError::Damaged);
        }
        let (&version, rest) = payload.split_first().ok_or(InviteError::Damaged)?;
        if version != VERSION {
            return Err(InviteError::UnsupportedVersion(version));
        }
        let (key, mut rest) = rest
            .split_first_chunk::<32>()
            .ok_or(InviteError::MissingKey)?;
        let mut invite = Invite {
            key: *key,
            onion: None,
            relay: None,
            address: None,
        };
        while let Some((&tag, after_tag)) = rest.split_first() {
            let field = InviteField::from_tag(tag).ok_or(InviteError::UnknownTag(tag))?;
            let (&len, after_len) = after_tag.split_first().ok_or(InviteError::TruncatedField)?;
            let (value, after_value) = after_len
                .split_at_checked(usize::from(len))
                .ok_or(InviteError::TruncatedField)?;
            let value = std::str::from_utf8(value).map_err(|_| InviteError::BadUtf8(field))?;
            check_field(field, value)?;
            let slot = invite.field_mut(field);
            if slot.is_some() {
                return Err(InviteError::DuplicateTag(tag));
            }
            *slot = Some(value.to_string());
            rest = after_value;
        }
        Ok(invite)
    }

    /// Whether `text` (trimmed) is meant as an invite rather than a host name or address:
    /// it starts with [`INVITE_PREFIX`] in any case, and its part before the first `.` or
    /// `:` has at least [`MIN_INVITE_LEN`] (63) characters — a host name's labels have at
    /// most 63 — or it is a single label (no `.` before a `:`) of at least
    /// [`MIN_CUT_INVITE_LEN`] characters, all of the invite's alphabet after the prefix: an
    /// invite cut short, which must be an error about the invite, never a name looked up in
    /// the DNS (it would carry part of the invite's key out). So `sf1.example.org`, `sf1-box`
    /// and `sf1box` are host names. When this is true, decode errors are to be reported as
    /// invite errors.
    pub fn looks_like_invite(text: &str) -> bool {
        let text = text.trim();
        let prefixed = text
            .get(..INVITE_PREFIX.len())
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case(INVITE_PREFIX));
        if !prefixed {
            return false;
        }
        let first_part = text.split(['.', ':']).next().unwrap_or(text);
        // A trailing dot (pasted from the end of a sentence) leaves a single label.
        let host = text.split(':').next().unwrap_or(text).trim_end_matches('.');
        let cut = !host.contains('.')
            && first_part.chars().count() >= MIN_CUT_INVITE_LEN
            && first_part[INVITE_PREFIX.len()..].chars().all(is_base32);
        first_part.chars().count() >= MIN_INVITE_LEN || cut
    }

    fn field(&self, field: InviteField) -> Option<&str> {
        match field {
            InviteField::Onion => self.onion.as_deref(),
            InviteField::Relay => self.relay.as_deref(),
            InviteField::Address => self.address.as_deref(),
        }
    }

    fn field_mut(&mut self, field: InviteField) -> &mut Option<String> {
        match field {
            InviteField::Onion => &mut self.onion,
            InviteField::Relay => &mut self.relay,
            InviteField::Address => &mut self.address,
        }
    }
}

/// A field's rules, the same for writing and reading: 1 to 255 bytes, no whitespace or
/// control characters.
fn check_field(field: InviteField, value: &str) -> Result<(), InviteError> {
    if value.is_empty() {
        return Err(InviteError::EmptyField(field));
    }
    if value.len() > MAX_FIELD_LEN {
        return Err(InviteError::FieldTooLong {
            field,
            len: value.len(),
        });
    }
    if value
        .chars()
        .any(|character| character.is_whitespace() || character.is_control())
    {
        return Err(InviteError::FieldWhitespace(field));
    }
    Ok(())
}

/// The first 4 bytes of `SHA-256("socketfalco invite v1" || payload)`.
fn checksum(payload: &[u8]) -> [u8; CHECKSUM_LEN] {
    let digest: [u8; 32] = Sha256::new()
        .chain_update(CHECKSUM_LABEL)
        .chain_update(payload)
        .finalize()
        .into();
    // Constant indexes into a fixed-size array: checked when compiling.
    [digest[0], digest[1], digest[2], digest[3]]
}

/// Whether `character` is in the base32 alphabet, in either case.
fn is_base32(character: char) -> bool {
    matches!(character.to_ascii_lowercase(), 'a'..='z' | '2'..='7')
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE32_ALPHABET: &str = "abcdefghijklmnopqrstuvwxyz234567";

    /// The key 00 01 02 … 1f.
    fn counting_key() -> [u8; 32] {
        std::array::from_fn(|index| index as u8)
    }

    fn full() -> Invite {
        Invite {
            key: counting_key(),
            onion: Some(
                "duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad.onion:4000".into(),
            ),
            relay: Some("relay.example.org:4001".into()),
            address: Some("[2001:db8::1]:4000".into()),
        }
    }

    fn key_only() -> Invite {
        Invite {
            key: counting_key(),
            onion: None,
            relay: None,
            address: None,
        }
    }

    /// Builds the text of an arbitrary payload with a correct checksum, for hostile inputs.
    fn text_of_payload(payload: &[u8]) -> String {
        let mut bytes = payload.to_vec();
        bytes.extend_from_slice(&checksum(payload));
        format!(
            "{INVITE_PREFIX}{}",
            BASE32_NOPAD.encode(&bytes).to_ascii_lowercase()
        )
    }

    /// A version-1 payload with the counting key, followed by `fields`.
    fn payload_with(fields: &[u8]) -> Vec<u8> {
        let mut payload = vec![VERSION];
        payload.extend_from_slice(&counting_key());
        payload.extend_from_slice(fields);
        payload
    }

    #[test]
    fn round_trips_with_each_combination_of_fields() {
        for mask in 0..8u8 {
            let mut invite = full();
            if mask & 1 == 0 {
                invite.onion = None;
            }
            if mask & 2 == 0 {
                invite.relay = None;
            }
            if mask & 4 == 0 {
                invite.address = None;
            }
            let text = invite.encode().unwrap();
            assert!(text.starts_with(INVITE_PREFIX));
            assert!(text
                .chars()
                .all(|character| character.is_ascii_lowercase() || character.is_ascii_digit()));
            assert!(Invite::looks_like_invite(&text), "{text}");
            assert_eq!(Invite::decode(&text), Ok(invite), "{text}");
        }
    }

    #[test]
    fn key_only_invite_is_63_characters_and_looks_like_one() {
        let text = key_only().encode().unwrap();
        assert_eq!(text.len(), MIN_INVITE_LEN);
        assert!(Invite::looks_like_invite(&text));
    }

    #[test]
    fn typical_invite_with_a_relay_is_101_characters() {
        let invite = Invite {
            relay: Some("relay.example.org:4001".into()),
            ..key_only()
        };
        let text = invite.encode().unwrap();
        assert_eq!(text.len(), 101, "{text}");
        // Fields are written in tag order, whatever order they were set in.
        let payload = BASE32_NOPAD
            .decode(text[3..].to_ascii_uppercase().as_bytes())
            .unwrap();
        assert_eq!(payload[33..35], [2, 22]);
    }

    #[test]
    fn the_encoding_is_fixed() {
        // Pins the format: a change to the checksum, the layout or the alphabet shows here.
        let text = key_only().encode().unwrap();
        let payload = BASE32_NOPAD
            .decode(text[3..].to_ascii_uppercase().as_bytes())
            .unwrap();
        assert_eq!(payload[0], 1);
        assert_eq!(payload[1..33], counting_key());
        let mut hasher = Sha256::new();
        hasher.update(b"socketfalco invite v1");
        hasher.update(&payload[..33]);
        assert_eq!(payload[33..], hasher.finalize()[..4]);
        // Both computed independently with Python's hashlib and base64.
        assert_eq!(
            text,
            "sf1aeaacaqdaqcqmbyibefawdanbyhraeiscmkbkfqxdamrugy4dupb6oabfx4a"
        );
        let with_relay = Invite {
            relay: Some("relay.example.org:4001".into()),
            ..key_only()
        };
        assert_eq!(
            with_relay.encode().unwrap(),
            "sf1aeaacaqdaqcqmbyibefawdanbyhraeiscmkbkfqxdamrugy4dupb6aqwojswyylzfzsxqylnobwgkltpojttunbqgayscqz2fu"
        );
    }

    #[test]
    fn surrounding_whitespace_and_upper_case_are_accepted() {
        let text = full().encode().unwrap();
        assert_eq!(Invite::decode(&format!("  {text}\n")), Ok(full()));
        assert_eq!(Invite::decode(&text.to_ascii_uppercase()), Ok(full()));
        let mixed: String = text
            .chars()
            .enumerate()
            .map(|(index, character)| {
                if index % 2 == 0 {
                    character.to_ascii_uppercase()
                } else {
                    character
                }
            })
            .collect();
        assert_eq!(Invite::decode(&mixed), Ok(full()));
    }

    #[test]
    fn every_single_substitution_is_caught() {
        for invite in [full(), key_only()] {
            let text = invite.encode().unwrap();
            let characters: Vec<char> = text.chars().collect();
            for position in INVITE_PREFIX.len()..characters.len() {
                for replacement in BASE32_ALPHABET
                    .chars()
                    .filter(|c| *c != characters[position])
                {
                    let mut typo = characters.clone();
                    typo[position] = replacement;
                    let typo: String = typo.into_iter().collect();
                    assert_eq!(Invite::decode(&typo), Err(InviteError::Damaged), "{typo}");
                }
            }
        }
    }

    #[test]
    fn every_adjacent_swap_is_caught() {
        let text = full().encode().unwrap();
        let characters: Vec<char> = text.chars().collect();
        for position in INVITE_PREFIX.len()..characters.len() - 1 {
            if characters[position] == characters[position + 1] {
                continue;
            }
            let mut swapped = characters.clone();
            swapped.swap(position, position + 1);
            let swapped: String = swapped.into_iter().collect();
            assert_eq!(
                Invite::decode(&swapped),
                Err(InviteError::Damaged),
                "{swapped}"
            );
        }
    }

    #[test]
    fn truncation_is_caught() {
        let text = full().encode().unwrap();
        for len in INVITE_PREFIX.len()..text.len() {
            assert_eq!(
                Invite::decode(&text[..len]),
                Err(InviteError::Damaged),
                "{len}"
            );
        }
        // A character too many.
        assert_eq!(
            Invite::decode(&format!("{text}a")),
            Err(InviteError::Damaged)
        );
    }

    #[test]
    fn not_an_invite() {
        for text in [
            "",
            "sf",
            "peer.example.org",
            "sf2aaaa",
            "192.168.0.1:4000",
            "éé",
        ] {
            assert_eq!(
                Invite::decode(text),
                Err(InviteError::NotAnInvite),
                "{text}"
            );
        }
        let text = full().encode().unwrap();
        assert_eq!(
            Invite::decode(&text.replacen("sf1", "sfl", 1)),
            Err(InviteError::NotAnInvite)
        );
    }

    #[test]
    fn bad_characters_are_named_with_their_position() {
        let text = full().encode().unwrap();
        let cases = [
            ('1', 10),
            ('0', 4),
            ('8', 50),
            ('-', 20),
            (' ', 30),
            ('é', 40),
        ];
        for (character, position) in cases {
            let bad: String = text
                .chars()
                .enumerate()
                .map(|(index, original)| {
                    if index + 1 == position {
                        character
                    } else {
                        original
                    }
                })
                .collect();
            assert_eq!(
                Invite::decode(&bad),
                Err(InviteError::BadCharacter {
                    character,
                    position
                }),
                "{bad}"
            );
        }
        let message = InviteError::BadCharacter {
            character: '1',
            position: 10,
        }
        .to_string();
        assert_eq!(
            message,
            "the invite has '1' at character 10, which no invite has; copy it again"
        );
    }

    #[test]
    fn payload_errors() {
        let cases: Vec<(Vec<u8>, InviteError)> = vec![
            (vec![2], InviteError::UnsupportedVersion(2)),
            (
                [&[2u8][..], &counting_key()].concat(),
                InviteError::UnsupportedVersion(2),
            ),
            (vec![1], InviteError::MissingKey),
            (vec![1; 32], InviteError::MissingKey),
            (payload_with(&[4, 1, b'x']), InviteError::UnknownTag(4)),
            (payload_with(&[0, 1, b'x']), InviteError::UnknownTag(0)),
            (
                payload_with(&[2, 1, b'x', 2, 1, b'y']),
                InviteError::DuplicateTag(2),
            ),
            (payload_with(&[2]), InviteError::TruncatedField),
            (
                payload_with(&[2, 5, b'a', b'b']),
                InviteError::TruncatedField,
            ),
            (
                payload_with(&[3, 2, 0xC3, 0x28]),
                InviteError::BadUtf8(InviteField::Address),
            ),
            (
                payload_with(&[1, 0]),
                InviteError::EmptyField(InviteField::Onion),
            ),
            (
                payload_with(&[2, 3, b'a', b' ', b'b']),
                InviteError::FieldWhitespace(InviteField::Relay),
            ),
            (
                payload_with(&[3, 2, b'a', b'\n']),
                InviteError::FieldWhitespace(InviteField::Address),
            ),
        ];
        for (payload, error) in cases {
            assert_eq!(
                Invite::decode(&text_of_payload(&payload)),
                Err(error.clone()),
                "{error}"
            );
        }
        // Any field order is read.
        let reordered = payload_with(&[3, 1, b'a', 1, 1, b'o']);
        let invite = Invite::decode(&text_of_payload(&reordered)).unwrap();
        assert_eq!(
            (invite.onion.as_deref(), invite.address.as_deref()),
            (Some("o"), Some("a"))
        );
        // An empty body has nothing to check a checksum against.
        assert_eq!(Invite::decode("sf1"), Err(InviteError::Damaged));
    }

    #[test]
    fn encode_refuses_bad_fields() {
        let with_relay = |relay: &str| Invite {
            relay: Some(relay.into()),
            ..key_only()
        };
        assert_eq!(
            with_relay("").encode(),
            Err(InviteError::EmptyField(InviteField::Relay))
        );
        assert_eq!(
            with_relay(&"a".repeat(256)).encode(),
            Err(InviteError::FieldTooLong {
                field: InviteField::Relay,
                len: 256
            })
        );
        assert!(with_relay(&"a".repeat(255)).encode().is_ok());
        assert_eq!(
            with_relay("a b:1").encode(),
            Err(InviteError::FieldWhitespace(InviteField::Relay))
        );
        assert_eq!(
            with_relay("a\tb:1").encode(),
            Err(InviteError::FieldWhitespace(InviteField::Relay))
        );
        let long_onion = Invite {
            onion: Some("é".repeat(128)),
            ..key_only()
        };
        assert_eq!(
            long_onion.encode(),
            Err(InviteError::FieldTooLong {
                field: InviteField::Onion,
                len: 256
            })
        );
        // Non-ASCII but valid text round-trips.
        let unicode = Invite {
            address: Some("hôte.example:4000".into()),
            ..key_only()
        };
        assert_eq!(Invite::decode(&unicode.encode().unwrap()), Ok(unicode));
    }

    #[test]
    fn messages_are_one_line() {
        let errors = [
            InviteError::NotAnInvite,
            InviteError::BadCharacter {
                character: '\n',
                position: 3,
            },
            InviteError::Damaged,
            InviteError::UnsupportedVersion(2),
            InviteError::MissingKey,
            InviteError::UnknownTag(9),
            InviteError::DuplicateTag(1),
            InviteError::TruncatedField,
            InviteError::BadUtf8(InviteField::Onion),
            InviteError::EmptyField(InviteField::Relay),
            InviteError::FieldTooLong {
                field: InviteField::Address,
                len: 300,
            },
            InviteError::FieldWhitespace(InviteField::Address),
        ];
        for error in errors {
            assert!(!error.to_string().contains('\n'), "{error:?}");
        }
        assert_eq!(
            InviteError::Damaged.to_string(),
            "the invite is damaged: a typo or a cut? copy it again"
        );
        assert!(InviteError::UnsupportedVersion(2)
            .to_string()
            .contains("made by a newer SocketFalco"));
    }

    #[test]
    fn what_looks_like_an_invite() {
        let text = full().encode().unwrap();
        assert!(Invite::looks_like_invite(&text));
        assert!(Invite::looks_like_invite(&text.to_ascii_uppercase()));
        assert!(Invite::looks_like_invite(&format!(" {text} ")));
        // Pasted with stray punctuation or a port: still an invite, so the error is about it.
        assert!(Invite::looks_like_invite(&format!("{text}.")));
        assert!(Invite::looks_like_invite(&format!("{text}:4000")));
        // Host names and addresses.
        for host in [
            "sf1.example.org",
            "sf1-mirror.example.org:4000",
            "192.168.0.1",
            "[::1]:4000",
            "localhost",
            "peer.example.org",
            // A long name whose labels are each a valid length.
            &format!("sf1{}.{}.example.org", "a".repeat(59), "b".repeat(63)),
            "sf1box",
            "sf1-build-server-01:4000",
        ] {
            assert!(!Invite::looks_like_invite(host), "{host}");
        }
        // An invite cut short, at any length from 12 characters: an invite, whose decoding
        // then says it is damaged — never a host name to look up.
        for cut in [12, 40, 62] {
            let short = &text[..cut];
            assert!(Invite::looks_like_invite(short), "{short}");
            assert!(
                Invite::looks_like_invite(&format!("{short}:4000")),
                "{short}"
            );
            assert!(Invite::looks_like_invite(&format!("{short}.")), "{short}");
            assert!(Invite::decode(short).is_err(), "{short}");
        }
    }
}
