//! What a proxy or a relay answers, and what a user pastes (an invite, a proxy URL, an onion
//! name), through the parsers of `socketfalco-reach`; see
//! `socketfalco_testkit::fuzz_reach::check_reach`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| socketfalco_testkit::fuzz_reach::check_reach(data));
