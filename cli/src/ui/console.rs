//! Whether the terminal is still there, asked without reading from it.
//!
//! When a terminal window closes or an SSH connection drops, the terminal hangs up: reads
//! return end of file or fail with EIO from then on, and writes fail. crossterm's Unix event
//! source retries such reads forever (issue 11: 100% CPU, and the session never ends), so
//! the line editor never lets crossterm read a terminal that may be gone. It first waits
//! with poll(2) on the terminal's descriptor itself: a hang-up or error flag, or "readable"
//! with no byte to read (end of file), means the terminal is gone ([`look`]). The decision
//! is a pure function of what poll(2) and a read (or FIONREAD) answered ([`judge`],
//! [`judge_read`]) so that it is unit-tested on every platform.
//!
//! A resize is looked for beside the input ([`look_with_resize`]): crossterm turns the
//! window-change signal into its resize event only when asked, and asked with a key already
//! waiting too it hands out the resize and loses sight of the key (its poll is
//! edge-triggered), which then waits for the next key press. So the line editor asks it as
//! soon as the signal comes, before any key.
//!
//! On Windows a closed console is an error of the console API itself, and closing the
//! window is a console control event (see `commands::leave`); nothing here is needed there;
//! resizes come in order with the keys.

use std::io;

/// What one look at the terminal's input found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Look {
    /// Nothing to read yet.
    Quiet,
    /// Bytes are waiting to be read.
    Input,
    /// The terminal is gone: end of file, hang-up, or an error that will not go away.
    Gone,
}

/// The flags poll(2) returned for the terminal, without the platform's bit values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Readiness {
    /// POLLIN.
    pub readable: bool,
    /// POLLHUP, POLLERR or POLLNVAL.
    pub hung_up: bool,
}

/// What a read of the terminal (or FIONREAD, which says how many bytes a read would get)
/// means: 0 bytes is end of file; an interruption or "would block" is nothing yet; any other
/// error (EIO after a hang-up, EBADF) is the terminal gone.
pub fn judge_read(result: &io::Result<usize>) -> Look {
    match result {
        Ok(0) => Look::Gone,
        Ok(_) => Look::Input,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
            ) =>
        {
            Look::Quiet
        }
        Err(_) => Look::Gone,
    }
}

/// What one poll(2) of the terminal means. `pending` says how many bytes are readable; it is
/// asked only when poll(2) says the terminal is readable without hanging up.
pub fn judge(polled: io::Result<Readiness>, pending: impl FnOnce() -> io::Result<usize>) -> Look {
    match polled {
        Err(e) => match judge_read(&Err(e)) {
            Look::Input => Look::Quiet,
            other => other,
        },
        Ok(r) if r.hung_up => Look::Gone,
        Ok(r) if r.readable => judge_read(&pending()),
        Ok(_) => Look::Quiet,
    }
}

/// Waits up to `timeout` for the terminal on `fd` to have input or to go away; never reads.
#[cfg(unix)]
pub fn look(fd: std::os::unix::io::RawFd, timeout: std::time::Duration) -> Look {
    let (polled, _) = poll_terminal(fd, None, timeout);
    judge(polled, || pending_bytes(fd))
}

/// [`look`], also watching `resized`: the read end of a pipe that gets a byte at every
/// window change (the signal's self-pipe, non-blocking). Returns what the look found, and
/// whether the window changed (the pipe is drained then). Never reads the terminal.
#[cfg(unix)]
pub fn look_with_resize(
    fd: std::os::unix::io::RawFd,
    resized: &std::os::unix::net::UnixStream,
    timeout: std::time::Duration,
) -> (Look, bool) {
    use std::io::Read;
    use std::os::unix::io::AsRawFd;
    let (polled, changed) = poll_terminal(fd, Some(resized.as_raw_fd()), timeout);
    if changed {
        // One byte per signal, however many came: read until none is left.
        let mut sink = [0u8; 64];
        while matches!((&*resized).read(&mut sink), Ok(n) if n > 0) {}
    }
    (judge(polled, || pending_bytes(fd)), changed)
}

/// poll(2) on the terminal, and on `also` if given: the terminal's flags, and whether `also`
/// is readable.
#[cfg(unix)]
fn poll_terminal(
    fd: std::os::unix::io::RawFd,
    also: Option<std::os::unix::io::RawFd>,
    timeout: std::time::Duration,
) -> (io::Result<Readiness>, bool) {
    let watch = |fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let mut pollfds = [watch(fd), watch(also.unwrap_or(-1))];
    let count = if also.is_some() { 2 } else { 1 };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: `count` valid pollfds, their count, a timeout.
    if unsafe { libc::poll(pollfds.as_mut_ptr(), count, ms) } < 0 {
        return (Err(io::Error::last_os_error()), false);
    }
    let terminal = Readiness {
        readable: pollfds[0].revents & libc::POLLIN != 0,
        hung_up: pollfds[0].revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0,
    };
    (Ok(terminal), pollfds[1].revents & libc::POLLIN != 0)
}

/// How many bytes a read of `fd` would get (FIONREAD).
#[cfg(unix)]
fn pending_bytes(fd: std::os::unix::io::RawFd) -> io::Result<usize> {
    let mut count: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int.
    if unsafe { libc::ioctl(fd, libc::FIONREAD, &mut count) } < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(usize::try_from(count).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eio() -> io::Error {
        io::Error::from_raw_os_error(5)
    }

    #[test]
    fn end_of_file_and_eio_mean_the_terminal_is_gone() {
        assert_eq!(judge_read(&Ok(0)), Look::Gone);
        assert_eq!(judge_read(&Err(eio())), Look::Gone);
        assert_eq!(
            judge_read(&Err(io::ErrorKind::UnexpectedEof.into())),
            Look::Gone
        );
        assert_eq!(judge_read(&Ok(3)), Look::Input);
        assert_eq!(
            judge_read(&Err(io::ErrorKind::Interrupted.into())),
            Look::Quiet
        );
        assert_eq!(
            judge_read(&Err(io::ErrorKind::WouldBlock.into())),
            Look::Quiet
        );
    }

    #[test]
    fn a_hang_up_flag_is_gone_without_asking_for_bytes() {
        let hung_up = Readiness {
            readable: true,
            hung_up: true,
        };
        assert_eq!(
            judge(Ok(hung_up), || panic!("not asked after a hang-up")),
            Look::Gone
        );
    }

    #[test]
    fn readable_with_nothing_to_read_is_end_of_file() {
        let readable = Readiness {
            readable: true,
            hung_up: false,
        };
        assert_eq!(judge(Ok(readable), || Ok(0)), Look::Gone);
        assert_eq!(judge(Ok(readable), || Err(eio())), Look::Gone);
        assert_eq!(judge(Ok(readable), || Ok(5)), Look::Input);
    }

    #[test]
    fn a_timeout_or_an_interrupted_poll_is_quiet_and_a_failed_poll_is_gone() {
        assert_eq!(
            judge(Ok(Readiness::default()), || panic!("not asked")),
            Look::Quiet
        );
        assert_eq!(
            judge(Err(io::ErrorKind::Interrupted.into()), || panic!(
                "not asked"
            )),
            Look::Quiet
        );
        // EBADF: the descriptor was closed.
        assert_eq!(
            judge(Err(io::Error::from_raw_os_error(9)), || panic!("not asked")),
            Look::Gone
        );
    }

    /// A real pseudo-terminal whose other end closes: the look says gone at once, even with
    /// a long timeout, and keeps saying it (no read ever happens).
    #[cfg(target_os = "linux")]
    #[test]
    fn a_closed_pseudo_terminal_is_gone() {
        use std::os::unix::io::RawFd;
        use std::time::{Duration, Instant};
        let (mut master, mut slave): (RawFd, RawFd) = (-1, -1);
        // SAFETY: openpty fills two descriptors; the other pointers may be null.
        let opened = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(opened, 0, "{}", io::Error::last_os_error());
        assert_eq!(look(slave, Duration::from_millis(10)), Look::Quiet);
        // SAFETY: writes two bytes from a valid buffer to our own descriptor.
        assert_eq!(unsafe { libc::write(master, b"a\n".as_ptr().cast(), 2) }, 2);
        assert_eq!(look(slave, Duration::from_secs(5)), Look::Input);
        // SAFETY: closes our own descriptor once.
        unsafe { libc::close(master) };
        let start = Instant::now();
        assert_eq!(look(slave, Duration::from_secs(5)), Look::Gone);
        assert_eq!(look(slave, Duration::from_secs(5)), Look::Gone);
        assert!(start.elapsed() < Duration::from_secs(4));
        // SAFETY: closes our own descriptor once.
        unsafe { libc::close(slave) };
    }
}
