//! Tor v3 onion names (`<56 base32 characters>.onion`): telling an onion name from other
//! host names, checking one before it is handed to a proxy (so a typo is reported here
//! instead of as a slow failure inside Tor), and making one from a service's public key.
//!
//! A v3 name is the base32 form of `pubkey (32) || checksum (2) || version (1)`, where the
//! version is 3 and the checksum is the first two bytes of
//! `SHA3-256(".onion checksum" || pubkey || version)` (Tor's rend-spec-v3, section 6).

use std::fmt;

use data_encoding::BASE32_NOPAD;
use sha3::{Digest, Sha3_256};

/// The top-level domain of onion services, with its dot.
const SUFFIX: &str = ".onion";
/// The base32 characters of a v3 name (35 bytes).
pub const V3_LABEL_LEN: usize = 56;
/// The length of the v2 names Tor no longer supports (10 bytes).
const V2_LABEL_LEN: usize = 16;
/// The version byte of v3 names.
const VERSION: u8 = 3;
/// The constant that starts the checksum's input.
const CHECKSUM_PREFIX: &[u8] = b".onion checksum";

/// Why a name is not a usable v3 onion name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OnionError {
    /// The name does not end with `.onion`.
    NotOnion,
    /// The label before `.onion` has 16 characters: an old v2 name.
    V2,
    /// The label before `.onion` has neither 56 nor 16 characters.
    WrongLength { len: usize },
    /// A character that is not base32 (a–z, 2–7), at a 1-based position in the label.
    BadCharacter { character: char, position: usize },
    /// The version byte is not 3.
    BadVersion(u8),
    /// The checksum does not match the key.
    BadChecksum,
}

impl fmt::Display for OnionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OnionError::NotOnion => write!(f, "the name does not end with .onion"),
            OnionError::V2 => write!(
                f,
                "this is a v2 onion name (16 characters), which Tor does not support any more; ask for the v3 name (56 characters)"
            ),
            OnionError::WrongLength { len } => write!(
                f,
                "an onion name has 56 characters before .onion, this one has {len}; is it cut or mistyped?"
            ),
            OnionError::BadCharacter { character, position } => write!(
                f,
                "the onion name has {character:?} at position {position}; only a-z and 2-7 can be in one"
            ),
            OnionError::BadVersion(version) => write!(
                f,
                "the onion name says version {version}, not 3; is it mistyped?"
            ),
            OnionError::BadChecksum => {
                write!(f, "the onion name's checksum does not match: a typo?")
            }
        }
    }
}

impl std::error::Error for OnionError {}

/// Whether `host` ends with `.onion`, in any case (it says nothing about the rest).
pub fn is_onion_host(host: &str) -> bool {
    strip_onion_suffix(host).is_some()
}

/// Checks a v3 onion name, in any case. Subdomains (`www.<56>.onion`) are accepted: the last
/// label before `.onion` is the one checked.
pub fn check_onion_v3(host: &str) -> Result<(), OnionError> {
    let name = strip_onion_suffix(host).ok_or(OnionError::NotOnion)?;
    let label = name.rsplit('.').next().unwrap_or(name);
    let len = label.chars().count();
    if len == V2_LABEL_LEN {
        return Err(OnionError::V2);
    }
    if len != V3_LABEL_LEN {
        return Err(OnionError::WrongLength { len });
    }
    if let Some((index, character)) = label
        .chars()
        .enumerate()
        .find(|(_, character)| !is_base32(*character))
    {
        return Err(OnionError::BadCharacter {
            character,
            position: index + 1,
        });
    }
    // All 56 characters are ASCII base32: 280 bits, exactly 35 bytes, so decoding succeeds.
    let decoded = BASE32_NOPAD
        .decode(label.to_ascii_uppercase().as_bytes())
        .map_err(|_| OnionError::BadChecksum)?;
    let (key, rest) = decoded
        .split_first_chunk::<32>()
        .ok_or(OnionError::BadChecksum)?;
    let [checksum_0, checksum_1, version] = *rest else {
        return Err(OnionError::BadChecksum);
    };
    if version != VERSION {
        return Err(OnionError::BadVersion(version));
    }
    if checksum(key) != [checksum_0, checksum_1] {
        return Err(OnionError::BadChecksum);
    }
    Ok(())
}

/// The v3 onion name of the service with public key `key`: `<56 lowercase>.onion`.
pub fn onion_name_from_public_key(key: &[u8; 32]) -> String {
    let mut bytes = Vec::with_capacity(35);
    bytes.extend_from_slice(key);
    bytes.extend_from_slice(&checksum(key));
    bytes.push(VERSION);
    let mut name = BASE32_NOPAD.encode(&bytes).to_ascii_lowercase();
    name.push_str(SUFFIX);
    name
}

/// The first two bytes of `SHA3-256(".onion checksum" || key || 3)`.
fn checksum(key: &[u8]) -> [u8; 2] {
    let digest: [u8; 32] = Sha3_256::new()
        .chain_update(CHECKSUM_PREFIX)
        .chain_update(key)
        .chain_update([VERSION])
        .finalize()
        .into();
    // Constant indexes into a fixed-size array: checked when compiling.
    [digest[0], digest[1]]
}

/// `host` without its `.onion` suffix (any case), or None when it has none.
fn strip_onion_suffix(host: &str) -> Option<&str> {
    let split = host.len().checked_sub(SUFFIX.len())?;
    // `get` is None when `split` falls inside a multi-byte character: then it is no suffix.
    let (name, suffix) = (host.get(..split)?, host.get(split..)?);
    suffix.eq_ignore_ascii_case(SUFFIX).then_some(name)
}

/// Whether `character` is in the base32 alphabet, in either case.
fn is_base32(character: char) -> bool {
    matches!(character.to_ascii_lowercase(), 'a'..='z' | '2'..='7')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DuckDuckGo's published v3 onion service.
    const DUCKDUCKGO: &str = "duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad.onion";

    /// The name of the key 00 01 02 … 1f, computed independently (Python's hashlib and base64).
    const COUNTING_KEY_NAME: &str =
        "aaaqeayeaudaocajbifqydiob4ibceqtcqkrmfyydenbwha5dyp3kead.onion";

    fn counting_key() -> [u8; 32] {
        std::array::from_fn(|index| index as u8)
    }

    #[test]
    fn recognises_onion_hosts_in_any_case() {
        assert!(is_onion_host(DUCKDUCKGO));
        assert!(is_onion_host("x.ONION"));
        assert!(is_onion_host("abc.Onion"));
        assert!(is_onion_host(".onion"));
        assert!(!is_onion_host("onion"));
        assert!(!is_onion_host("example.org"));
        assert!(!is_onion_host("onion.example.org"));
        assert!(!is_onion_host(""));
        // Multi-byte characters where the suffix would start: no panic, no match.
        assert!(!is_onion_host("ééééé"));
        assert!(!is_onion_host("é.onio"));
    }

    #[test]
    fn duckduckgo_passes() {
        assert_eq!(check_onion_v3(DUCKDUCKGO), Ok(()));
        assert_eq!(check_onion_v3(&DUCKDUCKGO.to_ascii_uppercase()), Ok(()));
        assert_eq!(check_onion_v3(&format!("www.{DUCKDUCKGO}")), Ok(()));
    }

    #[test]
    fn name_from_key_round_trips() {
        let name = onion_name_from_public_key(&counting_key());
        assert_eq!(name, COUNTING_KEY_NAME);
        assert_eq!(check_onion_v3(&name), Ok(()));
        for seed in 0..=255u8 {
            let key = [seed; 32];
            let name = onion_name_from_public_key(&key);
            assert_eq!(name.len(), V3_LABEL_LEN + SUFFIX.len());
            assert_eq!(check_onion_v3(&name), Ok(()), "{name}");
        }
    }

    #[test]
    fn a_flipped_character_breaks_the_checksum() {
        // Change the first character: the key changes, the checksum does not follow.
        let typo = DUCKDUCKGO.replacen('d', "e", 1);
        assert_eq!(check_onion_v3(&typo), Err(OnionError::BadChecksum));
        assert!(OnionError::BadChecksum.to_string().contains("a typo?"));
    }

    #[test]
    fn the_version_is_checked() {
        // The last character carries the version's low bits: "d" is version 3, "a" is 0.
        let label = DUCKDUCKGO.trim_end_matches(SUFFIX);
        let version_0 = format!("{}a.onion", &label[..V3_LABEL_LEN - 1]);
        assert_eq!(check_onion_v3(&version_0), Err(OnionError::BadVersion(0)));
    }

    #[test]
    fn lengths_and_characters() {
        assert_eq!(
            check_onion_v3("expyuzz4wqqyqhjn.onion"),
            Err(OnionError::V2)
        );
        assert!(OnionError::V2.to_string().contains("v2"));
        assert_eq!(
            check_onion_v3("abc.onion"),
            Err(OnionError::WrongLength { len: 3 })
        );
        assert_eq!(
            check_onion_v3(".onion"),
            Err(OnionError::WrongLength { len: 0 })
        );
        assert_eq!(
            check_onion_v3("www..onion"),
            Err(OnionError::WrongLength { len: 0 })
        );
        let long = format!("a{DUCKDUCKGO}");
        assert_eq!(
            check_onion_v3(&long),
            Err(OnionError::WrongLength { len: 57 })
        );
        assert_eq!(check_onion_v3("example.org"), Err(OnionError::NotOnion));

        let with_one = DUCKDUCKGO.replacen('g', "1", 1);
        assert_eq!(
            check_onion_v3(&with_one),
            Err(OnionError::BadCharacter {
                character: '1',
                position: 9
            })
        );
        let with_accent = DUCKDUCKGO.replacen('k', "é", 1);
        assert_eq!(
            check_onion_v3(&with_accent),
            Err(OnionError::BadCharacter {
                character: 'é',
                position: 4
            })
        );
    }
}
