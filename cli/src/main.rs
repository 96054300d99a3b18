//! The `socketfalco` binary.
fn main() {}
