//! Human output: every line on stderr carries a timestamp and the run id, and
//! is appended to the run's log file in the state directory as well, because
//! Drone drops a cancelled step's output and deletes its workspace.
//!
//! One global logger: the process is one wrapper, one harness or one command,
//! and every thread (the signal funnel among them) logs through it. Writes are
//! whole lines under a mutex, so lines of different threads never interleave.
//!
//! A full disk (SPEC section 1) must not cost a line on stderr, which is
//! Drone's step output and then the only copy: every line goes to stderr
//! first, whatever the log file does. A failed append is said on stderr once
//! (naming the file and the error), not once per line, and when the file can
//! be written again a note in it marks where lines are missing. Other files
//! that cannot be written (run record, checkpoint, reports, owner records)
//! are said through [`write_failed`], which says each file once and the full
//! disk itself once, so an operator reads one clear line instead of a
//! warning per phase. The bookkeeping is [`Failures`] and [`Gap`], pure and
//! unit-tested; the logger only carries out what they decide.
//!
//! The log file is bounded (`--log-limit`, SPEC section 1): it keeps its
//! first half of the limit and, past that, its last lines, with one line
//! between them saying how many bytes were dropped. A log is read while it
//! is written (`logs --follow`), so the tail cannot wait for the end in
//! memory: when the part after the head would pass the other half, the
//! oldest half of that part is dropped in place (its newest lines are
//! copied down to just after the head and the file is cut), so the file
//! holds the head and between a quarter and a half of the limit of the
//! newest lines. Each byte is copied at most once more than it is written.
//! [`LogCap`] decides (pure); [`CappedFile`] carries it out.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

struct Logger {
    tag: String,
    file: Option<LogFile>,
    failures: Failures,
}

/// The log file lines are appended to, and the lines it is missing.
struct LogFile {
    file: CappedFile,
    path: PathBuf,
    gap: Gap,
}

static LOGGER: Mutex<Logger> = Mutex::new(Logger {
    tag: String::new(),
    file: None,
    failures: Failures::new(),
});

fn with_logger<R>(f: impl FnOnce(&mut Logger) -> R) -> R {
    // A poisoned mutex only means another thread panicked mid-line; logging
    // must go on (teardown logs through it).
    let mut guard = match LOGGER.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    f(&mut guard)
}

/// Sets the tag printed on every line (the run id, or the command's name).
pub(crate) fn set_tag(tag: &str) {
    with_logger(|l| l.tag = tag.to_string());
}

/// Forgets which failed writes were said: a long-lived process (`janitor
/// --watch`) says a full disk again when it is full again at a later tick.
pub(crate) fn forget_write_failures() {
    with_logger(|l| l.failures = Failures::new());
}

/// Appends every later line to `path` too (created 0644, close-on-exec),
/// keeping it within `limit` bytes (see the module header).
pub(crate) fn set_file(path: &Path, limit: u64) -> std::io::Result<()> {
    let file = CappedFile::open(path, limit)?;
    with_logger(|l| {
        l.file = Some(LogFile {
            file,
            path: path.to_path_buf(),
            gap: Gap::default(),
        })
    });
    Ok(())
}

/// Stops appending to the log file (before the run tree that holds it goes).
pub(crate) fn close_file() {
    with_logger(|l| l.file = None);
}

/// Whether an error is the disk (or the user's quota) being full: ENOSPC or
/// EDQUOT anywhere in its chain.
pub fn is_disk_full(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(io_is_disk_full)
}

fn io_is_disk_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// Which failed writes were said already. Pure bookkeeping: each file (by
/// the words that name it) is said once; the first full-disk failure says
/// that the disk is full, with the kernel's error, and later ones only name
/// their file, so the notice is one line however many files fail.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Failures {
    said: Vec<String>,
    disk_full_said: bool,
}

impl Failures {
    pub const fn new() -> Failures {
        Failures {
            said: Vec::new(),
            disk_full_said: false,
        }
    }

    /// The warning to say for a failed write of `what` (words that name the
    /// file, e.g. `the run record /state/runs/x/run.json`), or None when it
    /// was said already. `error` is the error's text; `disk_full` whether it
    /// is ENOSPC/EDQUOT.
    pub fn warning(&mut self, what: &str, error: &str, disk_full: bool) -> Option<String> {
        if self.said.iter().any(|s| s == what) {
            return None;
        }
        self.said.push(what.to_string());
        Some(match (disk_full, self.disk_full_said) {
            (true, false) => {
                self.disk_full_said = true;
                format!(
                    "warning: the disk is full: could not write {what}: {error} (said once; stderr keeps every line)"
                )
            }
            (true, true) => format!("warning: could not write {what} either (the disk is full)"),
            (false, _) => format!("warning: could not write {what}: {error}"),
        })
    }
}

/// The lines a log file is missing since its last good append. Pure: the
/// logger reports each append's outcome and writes what this returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Gap {
    /// Lines that could not be appended since the last good one.
    missed: u64,
    /// The error of the first of them.
    error: Option<String>,
}

impl Gap {
    /// An append failed with `error`.
    pub fn failed(&mut self, error: &str) {
        self.missed += 1;
        self.error.get_or_insert_with(|| error.to_string());
    }

    /// What to write ahead of the next line so the file says where lines
    /// are missing (`prefix`: that line's timestamp and tag); None when
    /// nothing is missing. It starts on a line of its own: the append that
    /// failed may have written part of a line (a full disk takes what fits).
    pub fn note(&self, prefix: &str, path: &Path) -> Option<String> {
        if self.missed == 0 {
            return None;
        }
        Some(format!(
            "\n{prefix}warning: {} line(s) missing here: {} could not be written ({}); they went to stderr only\n",
            self.missed,
            path.display(),
            self.error.as_deref().unwrap_or("unknown error")
        ))
    }

    /// The note and the line are in the file.
    pub fn closed(&mut self) {
        *self = Gap::default();
    }
}

/// Says a failed write of `what` on stderr (and in the log, if it can still
/// be written), once per file, the full disk once per process (see
/// [`Failures`]). For files whose loss never changes a verdict.
pub(crate) fn write_failed(what: &str, err: &anyhow::Error) {
    // `what` names the file already: on a full disk the kernel's words are
    // all the error adds; anything else keeps its whole chain.
    let full = is_disk_full(err);
    let text = if full {
        err.root_cause().to_string()
    } else {
        format!("{err:#}")
    };
    let warning = with_logger(|l| l.failures.warning(what, &text, full));
    if let Some(w) = warning {
        line(format_args!("{w}"));
    }
}

/// RFC 3339 UTC timestamp with milliseconds (`YYYY-MM-DDTHH:MM:SS.mmmZ`,
/// the fraction cut, not rounded). A time before 1970 is written as 1970's
/// start, one past chrono's last year (262143) as its end.
pub fn timestamp(t: SystemTime) -> String {
    use chrono::{DateTime, Datelike, Timelike};
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let at = i64::try_from(d.as_secs())
        .ok()
        .and_then(|secs| DateTime::from_timestamp(secs, d.subsec_nanos()))
        .unwrap_or(DateTime::<chrono::Utc>::MAX_UTC);
    // The fields one by one, not `%Y`: chrono writes a year past 9999 with
    // a sign.
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        at.year(),
        at.month(),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        d.subsec_millis()
    )
}

/// Parses what [`timestamp`] writes (`YYYY-MM-DDTHH:MM:SS.mmmZ`, the
/// fraction optional, at most nanoseconds, cut to milliseconds); None for
/// anything else, impossible dates and times before 1970 included.
pub fn parse_timestamp(text: &str) -> Option<SystemTime> {
    let t = text.strip_suffix('Z')?;
    let (date, time) = t.split_once('T')?;
    let (hms, frac) = match time.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (time, None),
    };
    // Fixed-width fields of digits only: no signs, no short fields.
    let fields = |s: &str, widths: &[usize]| -> Option<Vec<u32>> {
        let parts: Vec<&str> = s.split(if s.contains(':') { ':' } else { '-' }).collect();
        if parts.len() != widths.len() {
            return None;
        }
        parts
            .iter()
            .zip(widths)
            .map(|(p, w)| {
                (p.len() == *w && p.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| p.parse().ok())
                    .flatten()
            })
            .collect()
    };
    let d = fields(date, &[4, 2, 2])?;
    let h = fields(hms, &[2, 2, 2])?;
    // chrono refuses an impossible date and a second of 60 (it spells a
    // leap second in the fraction, which this format never does).
    let at = chrono::NaiveDate::from_ymd_opt(i32::try_from(d[0]).ok()?, d[1], d[2])?
        .and_hms_opt(h[0], h[1], h[2])?
        .and_utc();
    let ms: u64 = match frac {
        None => 0,
        Some(f) if !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{:0<3}", &f[..f.len().min(3)]).parse().ok()?
        }
        Some(_) => return None,
    };
    let secs = u64::try_from(at.timestamp()).ok()?;
    Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(secs * 1000 + ms))
}

/// Writes one line. Use the [`say!`](crate::say) macro.
pub fn line(args: std::fmt::Arguments<'_>) {
    line_counted(args);
}

/// Writes one line like [`line`] and returns its length as written (the
/// timestamp and tag included): what a bounded writer counts.
pub fn line_counted(args: std::fmt::Arguments<'_>) -> u64 {
    let now = timestamp(SystemTime::now());
    with_logger(|l| {
        let prefix = if l.tag.is_empty() {
            format!("{now} ")
        } else {
            format!("{now} [{}] ", l.tag)
        };
        // Every line leaves through here: the secrets go now (the module
        // `redact`), from the message and the tag alike.
        let text = crate::redact::text(&format!("{prefix}{args}\n")).into_owned();
        let written = text.len() as u64;
        // Stderr first and always: it is the step's output, and the only
        // copy when the log file cannot be written. Best effort: a closed
        // stderr (the step's shell is gone) must not stop a teardown.
        let _ = std::io::stderr().write_all(text.as_bytes());
        let Some(lf) = l.file.as_mut() else {
            return written;
        };
        let mut bytes = lf.gap.note(&prefix, &lf.path).unwrap_or_default();
        bytes.push_str(&text);
        match lf.file.append(bytes.as_bytes(), &prefix) {
            Ok(()) => lf.gap.closed(),
            Err(e) => {
                let error = e.to_string();
                lf.gap.failed(&error);
                let what = format!("the log file {}", lf.path.display());
                if let Some(w) = l.failures.warning(&what, &error, io_is_disk_full(&e)) {
                    let _ = std::io::stderr().write_all(format!("{prefix}{w}\n").as_bytes());
                }
            }
        }
        written
    })
}

/// What [`line`] adds to a message of `len` bytes: the timestamp, the tag
/// and the newline (the timestamp has a fixed width).
pub fn line_len(len: usize) -> u64 {
    let tag = with_logger(|l| l.tag.len());
    let stamp = "2000-01-01T00:00:00.000Z ".len();
    (stamp + if tag == 0 { 0 } else { tag + 3 } + len + 1) as u64
}

/// The smallest `--log-limit`: room for a head and a tail of some lines.
pub const MIN_LOG_LIMIT: u64 = 64 << 10;

/// The head-and-tail rule of a log file (see the module header), as
/// offsets in the file. Pure: [`CappedFile`] asks it before each append
/// and reports what it did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogCap {
    limit: u64,
    /// The file's length.
    size: u64,
    /// Where the head ends (a line boundary), once it is full.
    head_end: Option<u64>,
    /// Where the newest lines start: after the head and the dropped-bytes
    /// line.
    tail_start: u64,
    /// Bytes dropped so far.
    dropped: u64,
}

impl LogCap {
    /// The rule for a file of `size` bytes already (a log appended to
    /// again keeps what it has as its head).
    pub fn new(limit: u64, size: u64) -> LogCap {
        let head_end = (size >= limit / 2).then_some(size);
        LogCap {
            limit,
            size,
            head_end,
            tail_start: size,
            dropped: 0,
        }
    }

    fn tail_budget(&self) -> u64 {
        self.limit - self.limit / 2
    }

    /// Before an append of `len` bytes: None to append as is, or
    /// Some(offset) to drop the tail's bytes before `offset` first (the
    /// caller moves it to the next line start, then calls [`Self::dropped`]).
    pub fn before(&mut self, len: u64) -> Option<u64> {
        let head_end = match self.head_end {
            Some(h) => h,
            None if self.size + len <= self.limit / 2 => return None,
            None => {
                self.head_end = Some(self.size);
                self.tail_start = self.size;
                self.size
            }
        };
        // Room for the dropped-bytes line (a timestamp, a tag and a sentence).
        const LINE_ROOM: u64 = 512;
        let budget = self.tail_budget();
        if self.size - self.tail_start + len + LINE_ROOM <= budget {
            return None;
        }
        let keep_from = self.size.saturating_sub(budget / 2).max(self.tail_start);
        // Nothing to gain, or the kept part would overlap where it goes.
        (keep_from > self.tail_start && keep_from > head_end + LINE_ROOM).then_some(keep_from)
    }

    /// Where the dropped-bytes line goes (the head's end).
    pub fn head_end(&self) -> Option<u64> {
        self.head_end
    }

    /// The total dropped once the tail's bytes before `keep_from` go.
    pub fn dropped_with(&self, keep_from: u64) -> u64 {
        self.dropped + keep_from.saturating_sub(self.tail_start)
    }

    /// The tail's bytes before `keep_from` were dropped and a line of
    /// `line_len` bytes put after the head.
    pub fn dropped(&mut self, keep_from: u64, line_len: u64) {
        self.dropped = self.dropped_with(keep_from);
        let head_end = self.head_end.unwrap_or(self.tail_start);
        self.tail_start = head_end + line_len;
        self.size = self.tail_start + (self.size - keep_from);
    }

    /// `len` bytes were appended (`len` is what reached the file).
    pub fn appended(&mut self, len: u64) {
        self.size += len;
    }

    /// The file's length as the rule sees it.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The file's length is `size` (read before each append: a failed
    /// write may have left part of a line, another process may append).
    pub fn resync(&mut self, size: u64) {
        self.size = size.max(self.tail_start);
    }

    /// The line between the head and the tail.
    pub fn line(&self, prefix: &str, dropped: u64) -> String {
        format!(
            "{prefix}... {dropped} bytes of this log dropped here: --log-limit {} keeps its first {} and its newest lines (stderr had every line)\n",
            crate::units::human_bytes(self.limit),
            crate::units::human_bytes(self.limit / 2)
        )
    }
}

/// A log file kept by [`LogCap`]'s rule. Lines are appended through an
/// O_APPEND descriptor (they land at the file's true end, whoever else
/// appended); the in-place drop writes through a second one without
/// O_APPEND, since under O_APPEND Linux's `pwrite` appends too.
pub struct CappedFile {
    file: File,
    edit: File,
    cap: LogCap,
}

impl CappedFile {
    /// Opens (creates 0644, close-on-exec) `path` for appending within
    /// `limit` bytes.
    pub fn open(path: &Path, limit: u64) -> std::io::Result<CappedFile> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o644)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)?;
        let edit = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)?;
        let size = file.metadata()?.len();
        Ok(CappedFile {
            file,
            edit,
            cap: LogCap::new(limit, size),
        })
    }

    /// Appends `bytes` (whole lines), first dropping the oldest of the
    /// newest lines when the file would pass its limit; `prefix` starts the
    /// dropped-bytes line (the timestamp and tag of the line that caused it).
    pub fn append(&mut self, bytes: &[u8], prefix: &str) -> std::io::Result<()> {
        // The true length: a write that failed may have left part of a line.
        self.cap.resync(self.file.metadata()?.len());
        if let Some(from) = self.cap.before(bytes.len() as u64) {
            self.drop_before(from, prefix)?;
        }
        self.file.write_all(bytes)?;
        self.cap.appended(bytes.len() as u64);
        Ok(())
    }

    /// Drops the tail's bytes before the first line that starts at or
    /// after `from`: writes the dropped-bytes line after the head, copies
    /// the kept lines down after it, and cuts the file.
    fn drop_before(&mut self, from: u64, prefix: &str) -> std::io::Result<()> {
        let Some(head_end) = self.cap.head_end() else {
            return Ok(());
        };
        let size = self.cap.size();
        let mut buf = vec![0u8; 64 * 1024];
        let n = self.edit.read_at(&mut buf, from)?;
        let keep_from = match buf[..n].iter().position(|&b| b == b'\n') {
            Some(p) if from + (p as u64) + 1 < size => from + p as u64 + 1,
            _ => from,
        };
        let line = self.cap.line(prefix, self.cap.dropped_with(keep_from));
        self.edit.write_all_at(line.as_bytes(), head_end)?;
        // Forwards: the kept part only ever moves down (LogCap checks it).
        let mut src = keep_from;
        let mut dst = head_end + line.len() as u64;
        while src < size {
            let want = usize::try_from(size - src).map_or(buf.len(), |w| w.min(buf.len()));
            let got = self.edit.read_at(&mut buf[..want], src)?;
            if got == 0 {
                break;
            }
            self.edit.write_all_at(&buf[..got], dst)?;
            src += got as u64;
            dst += got as u64;
        }
        self.edit.set_len(dst)?;
        self.cap.dropped(keep_from, line.len() as u64);
        Ok(())
    }
}

/// Logs one human line: timestamp, run id, message.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => { $crate::log::line(format_args!($($arg)*)) };
}
