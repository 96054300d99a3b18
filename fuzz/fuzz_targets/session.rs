//! Structured scripts driving one or two core sessions; see
//! `socketfalco_testkit::fuzz::check_session`.
#![no_main]

use socketfalco_testkit::fuzz::{
    check_session_past_known_bugs, MeteredAllocator, SessionScript,
};

#[global_allocator]
static ALLOCATOR: MeteredAllocator = MeteredAllocator;

libfuzzer_sys::fuzz_target!(|script: SessionScript| check_session_past_known_bugs(script));
