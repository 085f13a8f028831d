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
//!
//! Everything a test prints is bounded (SPEC section 1): each stream keeps
//! to `--test-output-limit` by the head-and-tail rule of [`super::super::cap`].
//! The captured file gets the head as it comes and, at end-of-file, the
//! dropped-bytes line and the tail; the test's lines on stderr and in the
//! log stop once they pass half the limit (with a line naming the captured
//! file), and the rest of the tail is shown when the stream ends. The pump
//! holds a read buffer, a line piece and each stream's tail ring: bounded
//! by the setting whatever a test prints, and however long its lines are.

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
use crate::testrun::cap::HeadTail;
use crate::testrun::report::human_bytes;

/// How long the output readers may take to see end-of-file after a test
/// and its leftovers are gone (only a process outside our reach can hold a
/// pipe open longer).
pub(super) const READER_BOUND: Duration = Duration::from_secs(2);

/// How much of each output file goes into the JUnit report of a failure.
pub(super) const TAIL_BYTES: u64 = 16 * 1024;

/// The last [`TAIL_BYTES`] of a captured file, lossily decoded: what a
/// failure's reader needs. When that is not all the test wrote to the
/// stream (`written`; the file itself may hold a head, a dropped-bytes line
/// and a tail), a first line says it is truncated, how much of it is shown
/// and where the rest is (`shown_as`: the file as reports name it).
pub(super) fn tail(path: &Path, shown_as: &str, written: Option<u64>) -> String {
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
    let text = String::from_utf8_lossy(&buf);
    let whole = written.unwrap_or(len).max(len);
    if (buf.len() as u64) < whole {
        format!(
            "[cc-ci-run: truncated: the last {} of the {whole} bytes the test wrote; {shown_as} keeps its first and last halves of --test-output-limit]\n{text}",
            buf.len()
        )
    } else {
        text.into_owned()
    }
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

/// How much of a line without a newline is shown as one log line: a very
/// long line is shown in pieces rather than held.
const LINE_PIECE: usize = 8192;

/// One read from a test's pipe: large enough that a flooding test is
/// drained in few system calls.
const READ_CHUNK: usize = 64 * 1024;

/// What the pump says of a stream at its end-of-file.
#[derive(Clone, Debug)]
pub(super) struct StreamEnd {
    pub(super) file_name: String,
    /// Bytes the test wrote to it (kept or not).
    pub(super) bytes: u64,
}

/// A stream handed to the pump: the pipe's read end, where its bytes go,
/// and whom to tell at end-of-file.
struct Watch {
    pipe: OwnedFd,
    out_dir: PathBuf,
    file_name: String,
    prefix: String,
    limit: u64,
    done: mpsc::Sender<StreamEnd>,
}

/// One stream the pump is copying.
struct Stream {
    pipe: File,
    /// None: the file could not be created (said once).
    file: Option<File>,
    path: PathBuf,
    file_name: String,
    prefix: String,
    cap: HeadTail,
    /// The output offset up to which lines were shown (`pending` starts
    /// there).
    shown: u64,
    /// Bytes its shown lines took on stderr (timestamps and tags included).
    logged: u64,
    /// The shown lines reached half the limit: the rest waits for the end.
    held: bool,
    /// The start of a line not yet ended by a newline.
    pending: Vec<u8>,
    /// The captured file's bytes that may start a secret split across two
    /// reads: held back until the next read (the module `redact`).
    carry: crate::redact::Carry,
    done: mpsc::Sender<StreamEnd>,
}

impl Stream {
    /// Logs one line (or piece) of the test's, counting what it took.
    fn show(&mut self, bytes: &[u8]) {
        self.logged += show(&self.prefix, bytes);
    }

    /// The stream's name in words (`stdout`, `stderr`).
    fn stream(&self) -> &str {
        self.file_name.rsplit('.').next().unwrap_or("output")
    }

    /// Half the limit: what the test's lines may take on stderr (and in the
    /// log) before they are held, and what its last lines may take after.
    fn half(&self) -> u64 {
        self.cap.limit() / 2
    }

    /// Shows the complete lines of `bytes` (after what is pending); with
    /// `held_at`, holds the rest once the logged bytes reach it.
    fn lines(&mut self, bytes: &[u8], held_at: Option<u64>) {
        self.pending.extend_from_slice(bytes);
        let mut from = 0;
        while let Some(pos) = self.pending[from..].iter().position(|&b| b == b'\n') {
            self.logged += show(&self.prefix, &self.pending[from..=from + pos]);
            from += pos + 1;
            self.shown += pos as u64 + 1;
            if held_at.is_some_and(|h| self.logged >= h) {
                self.hold();
                return;
            }
        }
        self.pending.drain(..from);
        // A piece is cut where it splits no secret (the module `redact`):
        // the bytes a secret at the cut could need are waited for.
        let reach = crate::redact::longest().saturating_sub(1);
        while self.pending.len() >= LINE_PIECE + reach {
            let cut = crate::redact::cut_before(&self.pending, LINE_PIECE);
            let piece: Vec<u8> = self.pending.drain(..cut).collect();
            self.show(&piece);
            self.shown += piece.len() as u64;
            if held_at.is_some_and(|h| self.logged >= h) {
                self.hold();
                return;
            }
        }
    }

    fn hold(&mut self) {
        self.held = true;
        self.pending = Vec::new();
        say!(
            "{}... over half of --test-output-limit {}: its further lines are not shown until it ends, then its last ones (everything kept is in {})",
            self.prefix,
            human_bytes(self.cap.limit()),
            self.path.display()
        );
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
        let bytes = &chunk[..n];
        let head = self.cap.push(bytes);
        if head > 0 {
            if let Some(f) = self.file.as_mut() {
                let _ = f.write_all(&self.carry.push(&bytes[..head]));
            }
        }
        if !self.held {
            let half = self.half();
            self.lines(bytes, Some(half));
        }
        true
    }

    fn finish(mut self) {
        let line = self.cap.dropped_line(self.stream());
        if let Some(f) = self.file.as_mut() {
            let (a, b) = self.cap.tail_from(0);
            // The tail is whole in memory: redacted at once (a secret cut
            // by the dropped bytes is cut in the file as well).
            let tail = [a, b].concat();
            let _ = f
                .write_all(&self.carry.finish())
                .and_then(|()| line.as_ref().map_or(Ok(()), |l| f.write_all(l.as_bytes())))
                .and_then(|()| f.write_all(&crate::redact::bytes(&tail)));
        }
        if self.held {
            let (a, b) = self.cap.tail_from(self.shown.max(self.cap.tail_start()));
            let rest = [a, b].concat();
            let keep = last_lines_within(&rest, self.half(), |len| {
                crate::log::line_len(self.prefix.len() + len)
            });
            let from = self.cap.total() - keep.len() as u64;
            let skipped = from - self.shown;
            if skipped > 0 {
                say!(
                    "{}... {skipped} bytes not shown here (the test wrote {} bytes in all); its last {} bytes follow",
                    self.prefix,
                    self.cap.total(),
                    keep.len()
                );
            }
            self.pending.clear();
            self.lines(keep, None);
        }
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            self.show(&rest);
        }
        let _ = self.done.send(StreamEnd {
            file_name: std::mem::take(&mut self.file_name),
            bytes: self.cap.total(),
        });
    }
}

/// Logs one line (or piece) of a test's output with its `prefix`; returns
/// the bytes that took on stderr.
fn show(prefix: &str, bytes: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(bytes);
    crate::log::line_counted(format_args!(
        "{prefix}{}",
        text.trim_end_matches(['\n', '\r'])
    ))
}

/// The longest suffix of `bytes` made of whole lines (a line's first piece
/// may be cut at [`LINE_PIECE`] as the log shows it) whose log lines take
/// at most `budget` bytes, `cost(len)` being what a shown piece of `len`
/// bytes takes. A suffix of the last line alone when even that does not fit.
fn last_lines_within(bytes: &[u8], budget: u64, cost: impl Fn(usize) -> u64) -> &[u8] {
    let mut spent = 0u64;
    let mut start = bytes.len();
    // Walk back over line ends: each line [s, e) costs its pieces.
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let mut end = body.len();
    loop {
        let s = body[..end]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        let len = end - s;
        let pieces = len.div_ceil(LINE_PIECE).max(1);
        let c = (0..pieces)
            .map(|k| cost((len - k * LINE_PIECE).min(LINE_PIECE)))
            .sum::<u64>();
        if spent + c > budget {
            if start == bytes.len() {
                // Not even the last line fits: its last pieces that do, or
                // (a budget under one piece's cost: a small limit) the
                // last bytes of its last piece that do.
                let fit = usize::try_from(budget / cost(LINE_PIECE).max(1)).unwrap_or(0);
                let take = if fit > 0 {
                    fit * LINE_PIECE
                } else {
                    usize::try_from(budget.saturating_sub(cost(0))).unwrap_or(0)
                };
                start = body.len() - take.min(len);
            }
            break;
        }
        spent += c;
        start = s;
        if s == 0 {
            break;
        }
        end = s - 1;
    }
    &bytes[start..]
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

    /// Copies `pipe` to `out_dir/file_name` and to the log with `prefix`,
    /// each within `limit` (see the module header); one message on `done`
    /// at its end-of-file.
    pub(super) fn watch(
        &self,
        pipe: OwnedFd,
        out_dir: &Path,
        file_name: String,
        prefix: String,
        limit: u64,
        done: mpsc::Sender<StreamEnd>,
    ) -> Result<()> {
        let tx = self.tx.as_ref().context("the output pump has stopped")?;
        tx.send(Watch {
            pipe,
            out_dir: out_dir.to_path_buf(),
            file_name,
            prefix,
            limit,
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
    let mut chunk = vec![0u8; READ_CHUNK];
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
                        path: w.out_dir.join(&w.file_name),
                        file_name: w.file_name,
                        prefix: w.prefix,
                        cap: HeadTail::new(w.limit),
                        shown: 0,
                        logged: 0,
                        held: false,
                        pending: Vec::new(),
                        carry: crate::redact::Carry::default(),
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
