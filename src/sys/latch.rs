//! The latch a shutdown request sets, and the one conversion of a deadline
//! into a `poll` timeout that every interruptible wait uses.
//!
//! A latch is a pipe whose read end becomes readable once and stays so (the
//! byte is never read), so any number of waiters can `poll` it alongside a
//! child's pidfd or a lock waiter's pipe, and a signal handler can set it
//! with one `write` (async-signal-safe).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// The `poll` timeout that wakes at `deadline` (none: wait forever).
/// Rounded up to whole milliseconds and at least 1 ms: a timeout of 0.4 ms
/// must neither wake just before the deadline nor become a busy loop of
/// 0 ms polls.
pub(crate) fn timeout_until(deadline: Option<Instant>) -> PollTimeout {
    match deadline {
        Some(d) => timeout_for(d.saturating_duration_since(Instant::now())),
        None => PollTimeout::NONE,
    }
}

/// The `poll` timeout for a span, rounded up as [`timeout_until`] says.
pub(crate) fn timeout_for(d: Duration) -> PollTimeout {
    let ms = d.as_nanos().div_ceil(1_000_000).clamp(1, i32::MAX as u128) as i32;
    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
}

/// A one-shot, pollable flag: once set, its descriptor stays readable, so
/// any number of waiters can `poll` it alongside a child's pidfd.
#[derive(Debug)]
pub struct Latch {
    read: OwnedFd,
    write: OwnedFd,
    set: AtomicBool,
}

impl Latch {
    pub fn new() -> Result<Latch> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
            .context("failed to create the shutdown latch pipe")?;
        Ok(Latch {
            read,
            write,
            set: AtomicBool::new(false),
        })
    }

    /// Sets the latch; async-signal-safe in effect (one atomic, one write).
    pub fn set(&self) {
        if !self.set.swap(true, Ordering::SeqCst) {
            // The byte is never read, so the read end stays readable.
            let _ = nix::unistd::write(&self.write, b"x");
        }
    }

    pub(crate) fn is_set(&self) -> bool {
        self.set.load(Ordering::SeqCst)
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }

    /// Waits until `until` or until the latch is set; true when it was set.
    pub(crate) fn wait_until(&self, until: Instant) -> bool {
        loop {
            if self.is_set() {
                return true;
            }
            let now = Instant::now();
            if now >= until {
                return false;
            }
            let timeout = timeout_for(until - now);
            let mut fds = [PollFd::new(self.fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, timeout);
        }
    }
}
