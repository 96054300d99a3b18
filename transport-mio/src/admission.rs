//! Who a listener at its limit lets in. A listener chats with at most
//! [`EndpointConfig::max_peers`](crate::EndpointConfig::max_peers) devices at once, and any
//! device can make a new key and call: without a rule, strangers' throwaway keys could fill
//! every place and keep the people the user talks to out. So the listener knows its
//! **contacts** — the devices its user has written to, each by the key it proved — and a
//! contact who calls while every place is taken gets the place of the stranger admitted
//! last. Only a stranger is ever put out, and only for a contact; with every place held by
//! contacts, the caller is told the listener is busy, as before.
//!
//! A contact is known by its device id *and* its key: a device id alone proves nothing (anyone
//! can claim one), and a key is trusted only where the user's own writing put it. The set is
//! filled by the front end (from its store, [`Contacts::extend`]) and by the endpoint itself
//! when the user writes in a live chat.

use socketfalco_core::{DeviceId, PublicKey};
use std::collections::HashSet;
use std::sync::Mutex;

/// The devices the user has written to, by the key each proved. Shared between the endpoint
/// and the front end that fills it.
#[derive(Debug, Default)]
pub struct Contacts {
    known: Mutex<HashSet<(DeviceId, [u8; 32])>>,
}

impl Contacts {
    /// No contacts.
    pub fn new() -> Contacts {
        Contacts::default()
    }

    /// Adds contacts (a device with the key it proved).
    pub fn extend(&self, contacts: impl IntoIterator<Item = (DeviceId, PublicKey)>) {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known.extend(contacts.into_iter().map(|(d, k)| (d, k.0)));
    }

    /// Whether `device`, proving `key`, is a contact.
    pub fn contains(&self, device: DeviceId, key: PublicKey) -> bool {
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known.contains(&(device, key.0))
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.known.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A device in one of the listener's places.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seated {
    /// The device.
    pub device: DeviceId,
    /// It is a contact.
    pub contact: bool,
    /// When it was admitted (any clock that only goes forward): the newest stranger is put
    /// out first.
    pub admitted_at: i64,
}

/// What to do with a device that proved its key and asks to be let in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// There is a place: let it in.
    Admit,
    /// Every place is taken and the caller is a contact: let it in, and put out this
    /// stranger.
    InPlaceOf(DeviceId),
    /// Every place is taken, and by nobody who would make way: the listener is busy.
    Busy,
}

/// Decides on a caller (`contact`: whether it is one), given the *other* devices in the
/// listener's places (each once) and how many places there are (at least one).
pub fn admit(seated: &[Seated], places: usize, contact: bool) -> Admission {
    if seated.len() < places.max(1) {
        return Admission::Admit;
    }
    if !contact {
        return Admission::Busy;
    }
    seated
        .iter()
        .filter(|s| !s.contact)
        .max_by_key(|s| (s.admitted_at, s.device.0))
        .map_or(Admission::Busy, |s| Admission::InPlaceOf(s.device))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seat(n: u8, contact: bool, admitted_at: i64) -> Seated {
        Seated {
            device: DeviceId([n; 16]),
            contact,
            admitted_at,
        }
    }

    #[test]
    fn anyone_comes_in_while_there_is_a_place() {
        assert_eq!(admit(&[], 1, false), Admission::Admit);
        assert_eq!(admit(&[seat(1, false, 5)], 2, false), Admission::Admit);
        assert_eq!(admit(&[seat(1, true, 5)], 2, true), Admission::Admit);
    }

    #[test]
    fn a_stranger_finds_a_full_listener_busy_whoever_holds_the_places() {
        assert_eq!(admit(&[seat(1, false, 5)], 1, false), Admission::Busy);
        assert_eq!(admit(&[seat(1, true, 5)], 1, false), Admission::Busy);
    }

    #[test]
    fn a_contact_takes_the_place_of_the_newest_stranger() {
        let seated = [
            seat(1, false, 10),
            seat(2, true, 30),
            seat(3, false, 20),
            seat(4, false, 15),
        ];
        assert_eq!(
            admit(&seated, 4, true),
            Admission::InPlaceOf(DeviceId([3; 16]))
        );
    }

    #[test]
    fn a_contact_never_puts_out_another_contact() {
        let seated = [seat(1, true, 10), seat(2, true, 30)];
        assert_eq!(admit(&seated, 2, true), Admission::Busy);
    }

    #[test]
    fn a_contact_is_known_by_its_device_and_its_key_together() {
        let contacts = Contacts::new();
        assert!(contacts.is_empty());
        contacts.extend([(DeviceId([1; 16]), PublicKey([7; 32]))]);
        assert!(contacts.contains(DeviceId([1; 16]), PublicKey([7; 32])));
        assert!(!contacts.contains(DeviceId([1; 16]), PublicKey([8; 32])));
        assert!(!contacts.contains(DeviceId([2; 16]), PublicKey([7; 32])));
        contacts.extend([(DeviceId([1; 16]), PublicKey([7; 32]))]);
        assert_eq!(contacts.len(), 1);
    }
}
