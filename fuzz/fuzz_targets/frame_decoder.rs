//! Arbitrary bytes through the streaming frame decoder, in pieces the input chooses; see
//! `socketfalco_testkit::fuzz::check_frame_decoder`.
#![no_main]

use socketfalco_testkit::fuzz::{check_frame_decoder, MeteredAllocator};

#[global_allocator]
static ALLOCATOR: MeteredAllocator = MeteredAllocator;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check_frame_decoder(data));
