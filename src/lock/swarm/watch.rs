//! A waiter's wake-up: `docker events` for one lock object.

use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use crate::sys::latch::Latch;

/// Wakes a waiter when its lock object changes: `docker events` for the
/// object's name, so a release is seen in milliseconds without a docker
/// process per poll. The stream is replayed from just before the attempt
/// that found the lock busy (`--since`), so a release that lands between
/// that attempt and the moment the subscription is live is not missed. A
/// dead holder sends no event: the waiter also wakes at the lease's expiry
/// plus the margin. If the watch cannot start or its stream ends, the
/// waiter falls back to polling.
pub(super) struct Watch {
    child: crate::sys::spawn::Child,
    out: std::fs::File,
}

/// What ended a wait on a [`Watch`].
pub(super) enum Woke {
    /// An event, or the time ran out: try again.
    Again,
    Cancelled,
    /// The stream ended: poll instead.
    Closed,
}

impl Watch {
    pub(super) fn start(docker: &OsString, name: &str, since: SystemTime) -> Option<Watch> {
        let since = since
            .duration_since(SystemTime::UNIX_EPOCH)
            .ok()?
            .saturating_sub(Duration::from_secs(1));
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ok()?;
        let flags = nix::fcntl::fcntl(read.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL).ok()?;
        let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(read.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(flags)).ok()?;
        let mut cmd = Command::new(docker);
        cmd.args(["events", "--filter", "type=config", "--filter"])
            .arg(format!("config={name}"))
            .arg("--since")
            .arg(format!("{}.{:09}", since.as_secs(), since.subsec_nanos()))
            .args(["--format", "{{.Action}}"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::from(write))
            .stderr(std::process::Stdio::null());
        let child = crate::sys::spawn::spawn(&mut cmd, crate::sys::spawn::Isolation::Group);
        // The Command keeps its copy of the write end until dropped: drop it
        // now, or the stream never reports its end.
        drop(cmd);
        Some(Watch {
            child: child.ok()?,
            out: std::fs::File::from(read),
        })
    }

    pub(super) fn wait(&mut self, cancel: Option<&Latch>, until: Instant) -> Woke {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::io::Read;
        loop {
            let now = Instant::now();
            if now >= until {
                return Woke::Again;
            }
            let ms = (until - now).as_millis().clamp(1, i32::MAX as u128) as i32;
            let timeout = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
            let mut fds = vec![PollFd::new(self.out.as_fd(), PollFlags::POLLIN)];
            if let Some(c) = cancel {
                fds.push(PollFd::new(c.fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, timeout) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(_) => return Woke::Closed,
            }
            drop(fds);
            if cancel.is_some_and(Latch::is_set) {
                return Woke::Cancelled;
            }
            // Drain what arrived: any event means "look again".
            let mut buf = [0u8; 4096];
            let mut got = false;
            loop {
                match self.out.read(&mut buf) {
                    Ok(0) => return if got { Woke::Again } else { Woke::Closed },
                    Ok(_) => got = true,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break, // EAGAIN: drained
                }
            }
            if got {
                return Woke::Again;
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.terminate(Duration::from_millis(500));
    }
}
