//! Device identities (uuid4); a message is named by its author's id and sequence number.
//!
//! A device is named by a uuid4 it generates once (outside the core: the core has no
//! randomness). A message is named by its author's device id plus the author's own sequence
//! number, which starts at 1 and grows by one per message, so `(author, seq)` is unique and
//! stable across reconnections, re-syncs and restarts.

use std::fmt;
use std::str::FromStr;

/// A device's identity: the 16 bytes of its uuid4. Shown and parsed in the usual
/// `8-4-4-4-12` hexadecimal form.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceId(pub [u8; 16]);

impl DeviceId {
    /// Builds a device id from 16 random bytes, setting the uuid version (4) and variant bits.
    /// The caller supplies the randomness.
    pub fn from_random_bytes(mut bytes: [u8; 16]) -> DeviceId {
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        DeviceId(bytes)
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&uuid::Uuid::from_bytes(self.0).hyphenated(), f)
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({self})")
    }
}

/// The text was not a uuid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseDeviceIdError(String);

impl fmt::Display for ParseDeviceIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a device uuid: {}", self.0)
    }
}

impl std::error::Error for ParseDeviceIdError {}

impl FromStr for DeviceId {
    type Err = ParseDeviceIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s)
            .map(|u| DeviceId(*u.as_bytes()))
            .map_err(|e| ParseDeviceIdError(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_bytes_become_a_uuid4() {
        let id = DeviceId::from_random_bytes([0xff; 16]);
        let text = id.to_string();
        assert_eq!(text, "ffffffff-ffff-4fff-bfff-ffffffffffff");
        assert_eq!(text.parse::<DeviceId>().unwrap(), id);
    }

    #[test]
    fn garbage_is_not_a_device_id() {
        assert!("not-a-uuid".parse::<DeviceId>().is_err());
    }
}
