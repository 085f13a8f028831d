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

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
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
    file: File,
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

/// Appends every later line to `path` too (created 0644, close-on-exec).
pub(crate) fn set_file(path: &Path) -> std::io::Result<()> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o644)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)?;
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

/// RFC 3339 UTC timestamp with milliseconds, computed without a time crate.
pub fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, dd) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Parses what [`timestamp`] writes (`YYYY-MM-DDTHH:MM:SS.mmmZ`, the
/// fraction optional, at most nanoseconds, cut to milliseconds); None for
/// anything else, impossible dates included.
pub fn parse_timestamp(text: &str) -> Option<SystemTime> {
    let t = text.strip_suffix('Z')?;
    let (date, time) = t.split_once('T')?;
    let (hms, frac) = match time.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (time, None),
    };
    // Fixed-width fields of digits only: no signs, no short fields.
    let fields = |s: &str, widths: &[usize]| -> Option<Vec<u64>> {
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
    let (y, m, dd) = (d[0] as i64, d[1] as u32, d[2] as u32);
    let (hh, mi, ss) = (h[0], h[1], h[2]);
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let month_days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if dd == 0 || dd > month_days || hh > 23 || mi > 59 || ss > 59 {
        return None;
    }
    let ms = match frac {
        None => 0,
        Some(f) if !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{:0<3}", &f[..f.len().min(3)]).parse().ok()?
        }
        Some(_) => return None,
    };
    let days = days_from_civil(y, m, dd);
    let secs = u64::try_from(days).ok()? * 86_400 + hh * 3600 + mi * 60 + ss;
    Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(secs * 1000 + ms))
}

/// Howard Hinnant's civil-to-days algorithm (the inverse of [`civil_from_days`]).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 } as i64;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Writes one line. Use the [`say!`](crate::say) macro.
pub fn line(args: std::fmt::Arguments<'_>) {
    let now = timestamp(SystemTime::now());
    with_logger(|l| {
        let prefix = if l.tag.is_empty() {
            format!("{now} ")
        } else {
            format!("{now} [{}] ", l.tag)
        };
        let text = format!("{prefix}{args}\n");
        // Stderr first and always: it is the step's output, and the only
        // copy when the log file cannot be written. Best effort: a closed
        // stderr (the step's shell is gone) must not stop a teardown.
        let _ = std::io::stderr().write_all(text.as_bytes());
        let Some(lf) = l.file.as_mut() else {
            return;
        };
        let mut bytes = lf.gap.note(&prefix, &lf.path).unwrap_or_default();
        bytes.push_str(&text);
        match lf.file.write_all(bytes.as_bytes()) {
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
    });
}

/// Logs one human line: timestamp, run id, message.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => { $crate::log::line(format_args!($($arg)*)) };
}
