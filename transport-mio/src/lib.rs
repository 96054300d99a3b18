//! Drives a [`socketfalco_core`] link over non-blocking mio TCP sockets.
