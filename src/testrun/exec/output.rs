//! A test's output: one pump thread for the whole suite copies every
//! test's stdout and stderr to `output/<name>.stdout|.stderr` and logs each
//! line with the test's name as prefix; the tail of each goes into the
//! failure report.
//!
//! One thread polling every test's pipes, not two reader threads per test:
//! starting and ending two threads (stacks mapped and unmapped) per test
//! was a large part of the runner's per-test cost, and the pump also
//! creates the output files, so that inode allocation is off the path from
//! one test's end to the next one's start. Each stream still ends in one
//! message on its test's channel at end-of-file, as a reader thread's did.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::say;

/// How long the output readers may take to see end-of-file after a test
/// and its leftovers are gone (only a process outside our reach can hold a
/// pipe open longer).
pub(super) const READER_BOUND: Duration = Duration::from_secs(2);

/// How much of each output file goes into the JUnit report of a failure.
pub(super) const TAIL_BYTES: u64 = 16 * 1024;

/// The last [`TAIL_BYTES`] of a file, lossily decoded.
pub(super) fn tail(path: &Path) -> String {
    use std::io::Seek;
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len > TAIL_BYTES {
        let _ = f.seek(std::io::SeekFrom::Start(len - TAIL_BYTES));
    }
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// How a failed write of the captured output is named (one name for the
/// whole directory, so a full disk is said once, not twice per test).
pub(super) fn output_files(out_dir: &Path) -> String {
    format!(
        "the test output files in {} (the tests run; their output is in the log)",
        out_dir.display()
    )
}

/// The file a test's output is copied to. One that cannot be created (a
/// full disk) is said once and replaced by /dev/null: the output still
/// reaches the log line by line, and a test never fails for want of a
/// place to copy its output to.
pub(super) fn create_output(out_dir: &Path, name: &str) -> Result<File> {
    // std opens with O_CLOEXEC: the file never reaches a test by inheritance.
    let path = out_dir.join(name);
    match File::create(&path) {
        Ok(f) => Ok(f),
        Err(e) => {
            let e = anyhow::Error::from(e).context(format!("failed to create {}", path.display()));
            crate::log::write_failed(&output_files(out_dir), &e);
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/null")
                .context("failed to open /dev/null for a test's output")
        }
    }
}

/// A stream handed to the pump: the pipe's read end, where its bytes go,
/// and whom to tell at end-of-file.
struct Watch {
    pipe: OwnedFd,
    out_dir: PathBuf,
    file_name: String,
    prefix: String,
    done: mpsc::Sender<()>,
}

/// One stream the pump is copying.
struct Stream {
    pipe: File,
    /// None: the file could not be created (said once).
    file: Option<File>,
    prefix: String,
    /// The start of a line not yet ended by a newline.
    pending: Vec<u8>,
    done: mpsc::Sender<()>,
}

impl Stream {
    fn show(&self, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        say!("{}{}", self.prefix, text.trim_end_matches(['\n', '\r']));
    }

    /// Copies what one `read` returns; false at end-of-file (or an error,
    /// which ends the stream the same way).
    fn pump(&mut self, chunk: &mut [u8]) -> bool {
        let n = match self.pipe.read(chunk) {
            Ok(0) => return false,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return true,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        };
        if let Some(f) = self.file.as_mut() {
            let _ = f.write_all(&chunk[..n]);
        }
        self.pending.extend_from_slice(&chunk[..n]);
        let mut from = 0;
        while let Some(pos) = self.pending[from..].iter().position(|&b| b == b'\n') {
            self.show(&self.pending[from..=from + pos]);
            from += pos + 1;
        }
        self.pending.drain(..from);
        // A very long line is shown in pieces rather than held.
        if self.pending.len() >= chunk.len() {
            self.show(&self.pending);
            self.pending.clear();
        }
        true
    }

    fn finish(self) {
        if !self.pending.is_empty() {
            self.show(&self.pending);
        }
        let _ = self.done.send(());
    }
}

/// The suite's output pump (see the module header). Dropping it lets the
/// thread end once every stream it holds has reached end-of-file; it is not
/// joined, as a stream held open by a process outside the runner's reach
/// must not hold up the runner's exit (its test already said so).
pub(super) struct Pump {
    tx: Option<mpsc::Sender<Watch>>,
    /// Written once per [`Pump::watch`] (and on drop) so the thread's
    /// `poll` wakes and takes the new stream.
    wake: OwnedFd,
}

impl Pump {
    pub(super) fn start() -> Result<Pump> {
        let (wake_r, wake_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
            .context("failed to create the output pump's wake pipe")?;
        let (tx, rx) = mpsc::channel::<Watch>();
        std::thread::Builder::new()
            .name("test-output".into())
            .spawn(move || run_pump(&rx, &wake_r))
            .context("failed to start the output pump thread")?;
        Ok(Pump {
            tx: Some(tx),
            wake: wake_w,
        })
    }

    /// Copies `pipe` to `out_dir/file_name` and to the log with `prefix`;
    /// one message on `done` at its end-of-file.
    pub(super) fn watch(
        &self,
        pipe: OwnedFd,
        out_dir: &Path,
        file_name: String,
        prefix: String,
        done: mpsc::Sender<()>,
    ) -> Result<()> {
        let tx = self.tx.as_ref().context("the output pump has stopped")?;
        tx.send(Watch {
            pipe,
            out_dir: out_dir.to_path_buf(),
            file_name,
            prefix,
            done,
        })
        .map_err(|_| anyhow::anyhow!("the output pump thread has ended"))?;
        self.kick();
        Ok(())
    }

    fn kick(&self) {
        // A full pipe already holds a wake-up; nothing else can fail here.
        let _ = nix::unistd::write(&self.wake, b"w");
    }
}

impl Drop for Pump {
    fn drop(&mut self) {
        self.tx = None;
        self.kick();
    }
}

fn run_pump(rx: &mpsc::Receiver<Watch>, wake: &OwnedFd) {
    let mut streams: Vec<Stream> = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut open = true;
    loop {
        if !open && streams.is_empty() {
            return;
        }
        let mut fds: Vec<PollFd> = Vec::with_capacity(streams.len() + 1);
        fds.push(PollFd::new(wake.as_fd(), PollFlags::POLLIN));
        fds.extend(
            streams
                .iter()
                .map(|s| PollFd::new(s.pipe.as_fd(), PollFlags::POLLIN)),
        );
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            // Cannot happen with valid descriptors; never spin on it.
            Err(e) => {
                say!("test output pump: poll failed: {e}; the output of running tests is lost");
                return;
            }
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        // Backwards, so removing a finished stream keeps the indices of
        // those not yet visited.
        for k in (0..streams.len()).rev() {
            if ready[k + 1] && !streams[k].pump(&mut chunk) {
                streams.swap_remove(k).finish();
            }
        }
        if ready[0] {
            let mut sink = [0u8; 64];
            while matches!(nix::unistd::read(wake.as_raw_fd(), &mut sink), Ok(n) if n > 0) {}
            loop {
                match rx.try_recv() {
                    Ok(w) => streams.push(Stream {
                        file: create_output_or_none(&w.out_dir, &w.file_name),
                        pipe: File::from(w.pipe),
                        prefix: w.prefix,
                        pending: Vec::new(),
                        done: w.done,
                    }),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
        }
    }
}

/// [`create_output`], or none when even /dev/null cannot be opened (out
/// of descriptors): the output still reaches the log line by line.
fn create_output_or_none(out_dir: &Path, name: &str) -> Option<File> {
    match create_output(out_dir, name) {
        Ok(f) => Some(f),
        Err(e) => {
            crate::log::write_failed(&output_files(out_dir), &e);
            None
        }
    }
}
