//! Who really holds a lock file, from the kernel's point of view (SPEC
//! section 4). Read-only: nothing here takes, probes or releases a lock, so
//! `locks` can never make a run see its lock busy.
//!
//! Owner records can be stale or missing (a lock taken by util-linux
//! `flock(1)` has none), so the kernel decides:
//! - `/proc/locks` lists every granted flock with the inode it is on and the
//!   pid that *took* it. flock follows the open file description, so that
//!   process may have exited while another keeps the description open
//!   (`flock -x 9` in a shell: the `flock` process takes the lock on the
//!   shell's descriptor and exits; or a lock passed to a child);
//! - `/proc/PID/fdinfo/FD` has a `lock:` line for every lock held through
//!   the open file description behind that descriptor. So the taker is
//!   confirmed by finding such a line behind one of its own descriptors on
//!   the lock file, or corrected by finding it behind a descriptor of
//!   another live process. When the taker is dead and no live process has
//!   the lock, the lock is free.
//!
//! The parsers and the decision are pure ([`parse_proc_locks`],
//! [`decide`]); only [`inspect`] reads `/proc`.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::sys::procfs;

/// A file as the kernel names it: device and inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    pub(crate) fn of(meta: &std::fs::Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }

    /// The device as `/proc/locks` prints it: (major, minor).
    pub(crate) fn dev_pair(self) -> (u32, u32) {
        dev_major_minor(self.dev)
    }
}

/// glibc's encoding of `dev_t` (what `stat` returns) into major and minor.
pub fn dev_major_minor(dev: u64) -> (u32, u32) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major as u32, minor as u32)
}

/// One line of `/proc/locks` (or a `lock:` line of fdinfo).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockLine {
    /// `FLOCK`, `POSIX`, `OFDLCK`, `LEASE`, ...
    pub class: String,
    /// A request blocked behind a granted lock (`->`), not a lock.
    pub blocked: bool,
    /// `WRITE`, `READ`, ...
    pub mode: String,
    /// The pid that took the lock; 0 or negative when the kernel cannot say
    /// (a taker gone in another pid namespace, an OFD lock, a remote lock).
    pub pid: i32,
    pub major: u32,
    pub minor: u32,
    pub ino: u64,
}

impl LockLine {
    /// A granted flock (what our lock files and `flock(1)` use).
    pub fn is_granted_flock(&self) -> bool {
        self.class == "FLOCK" && !self.blocked
    }

    pub fn on(&self, id: FileId) -> bool {
        self.ino == id.ino && (self.major, self.minor) == id.dev_pair()
    }
}

/// Parses one lock line: `1: FLOCK  ADVISORY  WRITE 1419 fe:00:753934 0 EOF`,
/// with `->` after the number for a blocked request. The device is
/// `MAJOR:MINOR:INODE`, major and minor in hex, inode in decimal.
pub fn parse_lock_line(line: &str) -> Option<LockLine> {
    let mut tokens = line.split_whitespace();
    let number = tokens.next()?;
    if !number.ends_with(':') {
        return None;
    }
    let rest: Vec<&str> = tokens.collect();
    let (blocked, rest) = match rest.split_first() {
        Some((&"->", r)) => (true, r),
        _ => (false, &rest[..]),
    };
    let (class, rest) = rest.split_first()?;
    // The device token is the only one with two colons; the pid precedes it
    // and the mode precedes the pid (leases add words in between on some
    // kernels, so position from the device, not from the start).
    let dev_at = rest.iter().position(|t| t.matches(':').count() == 2)?;
    if dev_at < 2 {
        return None;
    }
    let pid: i32 = rest[dev_at - 1].parse().ok()?;
    let mode = rest[dev_at - 2].to_string();
    let mut parts = rest[dev_at].split(':');
    let major = u32::from_str_radix(parts.next()?, 16).ok()?;
    let minor = u32::from_str_radix(parts.next()?, 16).ok()?;
    let ino: u64 = parts.next()?.parse().ok()?;
    Some(LockLine {
        class: class.to_string(),
        blocked,
        mode,
        pid,
        major,
        minor,
        ino,
    })
}

/// Every parseable line of `/proc/locks`.
pub fn parse_proc_locks(text: &str) -> Vec<LockLine> {
    text.lines().filter_map(parse_lock_line).collect()
}

/// The `lock:` lines of a `/proc/PID/fdinfo/FD` file.
pub fn parse_fdinfo_locks(text: &str) -> Vec<LockLine> {
    text.lines()
        .filter_map(|l| l.strip_prefix("lock:"))
        .filter_map(parse_lock_line)
        .collect()
}

/// How `/proc/locks` lists a lock file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listed {
    /// No granted flock on this inode: free.
    No,
    /// A granted flock on this device and inode.
    Exact,
    /// A granted flock on this inode number under another device number.
    /// Some file systems (overlayfs, btrfs subvolumes) report a different
    /// device to `stat` than to `/proc/locks`, but it could also be another
    /// file: it counts only when a descriptor confirms it.
    InodeOnly,
}

/// What was found about one lock file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evidence {
    pub listed: Listed,
    /// The pid `/proc/locks` names (None: not listed, or the kernel gave 0).
    pub taker: Option<i32>,
    pub taker_alive: bool,
    /// Whether a descriptor of the taker on this file carries the lock:
    /// None when its descriptors could not be read (another user's process).
    pub taker_holds: Option<bool>,
    /// Other live processes with a descriptor on this file that carries the
    /// lock (one open file description may be shared by several).
    pub sharers: Vec<i32>,
}

/// The kernel's answer for one lock file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Holder {
    Free,
    /// Held; `pid` is the live process holding it, None when the kernel
    /// lists the lock but no live holder could be seen.
    Held {
        pid: Option<i32>,
    },
}

/// The decision of SPEC section 4, pure: the taker if it is alive and not
/// proven wrong, else a live process whose descriptor carries the lock,
/// else free.
pub fn decide(e: &Evidence) -> Holder {
    match e.listed {
        Listed::No => return Holder::Free,
        Listed::Exact => {
            if let Some(t) = e
                .taker
                .filter(|_| e.taker_alive && e.taker_holds != Some(false))
            {
                return Holder::Held { pid: Some(t) };
            }
        }
        Listed::InodeOnly => {
            if let Some(t) = e
                .taker
                .filter(|_| e.taker_alive && e.taker_holds == Some(true))
            {
                return Holder::Held { pid: Some(t) };
            }
        }
    }
    match e.sharers.iter().min() {
        Some(&pid) => Holder::Held { pid: Some(pid) },
        None => Holder::Free,
    }
}

/// The kernel's view of one lock file: the decision and the taker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KernelView {
    pub holder: Holder,
    /// The pid `/proc/locks` names as the taker (may be dead).
    pub taker: Option<i32>,
}

/// Finds the true holder of each file, reading `/proc/locks` once and
/// scanning other processes' descriptors only for locks whose taker could
/// not be confirmed.
pub(crate) fn inspect(files: &[FileId]) -> Vec<KernelView> {
    let lines: Vec<LockLine> = read_proc_locks()
        .map(|t| parse_proc_locks(&t))
        .unwrap_or_default();
    let mut evidence: Vec<Evidence> = files.iter().map(|id| listed(&lines, *id)).collect();
    for (e, id) in evidence.iter_mut().zip(files) {
        if let Some(t) = e.taker {
            e.taker_alive = procfs::alive(t);
            if e.taker_alive {
                e.taker_holds = process_holds(t, *id);
            }
        }
    }
    let unconfirmed: HashSet<FileId> = evidence
        .iter()
        .zip(files)
        .filter(|(e, _)| e.listed != Listed::No && e.taker_holds != Some(true))
        .map(|(_, id)| *id)
        .collect();
    if !unconfirmed.is_empty() {
        let found = scan_holders(&unconfirmed);
        for (e, id) in evidence.iter_mut().zip(files) {
            if let Some(pids) = found.get(id) {
                e.sharers = pids
                    .iter()
                    .copied()
                    .filter(|p| Some(*p) != e.taker)
                    .collect();
            }
        }
    }
    evidence
        .iter()
        .map(|e| KernelView {
            holder: decide(e),
            taker: e.taker,
        })
        .collect()
}

/// The text of `/proc/locks`, read so that no granted lock is missed
/// (see [`procfs::locks`]).
pub fn read_proc_locks() -> std::io::Result<String> {
    procfs::locks()
}

/// The kernel's view of one lock file by path (None: no such file).
pub(crate) fn inspect_path(path: &Path) -> Option<KernelView> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    inspect(&[FileId::of(&meta)]).pop()
}

fn listed(lines: &[LockLine], id: FileId) -> Evidence {
    let flocks = || {
        lines
            .iter()
            .filter(|l| l.is_granted_flock() && l.ino == id.ino)
    };
    let (listed, line) = match flocks().find(|l| l.on(id)) {
        Some(l) => (Listed::Exact, Some(l)),
        None => match flocks().next() {
            Some(l) => (Listed::InodeOnly, Some(l)),
            None => (Listed::No, None),
        },
    };
    Evidence {
        listed,
        taker: line.map(|l| l.pid).filter(|p| *p > 0),
        taker_alive: false,
        taker_holds: None,
        sharers: Vec::new(),
    }
}

/// Whether one of `pid`'s descriptors on file `id` carries a flock: None
/// when its descriptors cannot be read.
fn process_holds(pid: i32, id: FileId) -> Option<bool> {
    let fds = procfs::fds(pid)?;
    let mut holds = false;
    for fd in fds {
        if fd_holds_lock(pid, fd, |f| f == id).is_some() {
            holds = true;
            break;
        }
    }
    Some(holds)
}

/// If descriptor `fd` of `pid` is on a file `wanted` accepts and carries a
/// flock, that file.
fn fd_holds_lock(pid: i32, fd: i32, wanted: impl Fn(FileId) -> bool) -> Option<FileId> {
    // Cheap filter first: lock files are regular files named `*.lock`;
    // sockets, pipes and anonymous inodes read as `socket:[...]` and so on.
    let target = procfs::fd_target(pid, fd)?;
    if !target.to_string_lossy().contains(".lock") {
        return None;
    }
    let id = FileId::of(&procfs::fd_metadata(pid, fd)?);
    if !wanted(id) {
        return None;
    }
    let info = procfs::fdinfo(pid, fd)?;
    parse_fdinfo_locks(&info)
        .iter()
        .any(|l| l.class == "FLOCK" && !l.blocked && l.ino == id.ino)
        .then_some(id)
}

/// Every live process with a descriptor on one of `files` that carries a
/// flock, by file. Processes that vanish or cannot be read are skipped.
fn scan_holders(files: &HashSet<FileId>) -> HashMap<FileId, Vec<i32>> {
    let mut found: HashMap<FileId, Vec<i32>> = HashMap::new();
    for pid in procfs::pids() {
        let Some(fds) = procfs::fds(pid) else {
            continue;
        };
        for fd in fds {
            if let Some(id) = fd_holds_lock(pid, fd, |f| files.contains(&f)) {
                let pids = found.entry(id).or_default();
                if !pids.contains(&pid) && procfs::alive(pid) {
                    pids.push(pid);
                }
            }
        }
    }
    for pids in found.values_mut() {
        pids.sort_unstable();
    }
    found
}

/// `cc-ci-run locks [--json]`.
/// Names the live holder of a busy lock file as `locks` finds it: the pid
/// from the kernel (`/proc/locks`, confirmed through the holders'
/// descriptors), with the run, host and start time of the owner record
/// when the record is the holder's own, else the process's start time.
/// `owner` is the record read without the lock (it may be missing: a lock
/// taken by util-linux `flock(1)` has none, or stale: written by a dead
/// process whose open file description another process keeps).
pub(crate) fn describe_holder(path: &Path, owner: Option<&super::OwnerRecord>) -> String {
    let pid = match inspect_path(path).map(|v| v.holder) {
        Some(Holder::Held { pid: Some(pid) }) => pid,
        _ => return super::describe_owner(owner),
    };
    match owner {
        Some(o) if o.pid == pid => o.describe(),
        _ => {
            let since = procfs::process_started(pid)
                .map(|t| format!(", since {}", crate::log::timestamp(t)))
                .unwrap_or_default();
            let record = match owner {
                Some(o) => format!("its owner record names another process: {}", o.describe()),
                None => "no owner record: a lock taken outside cc-ci-run, such as by flock(1)"
                    .to_string(),
            };
            let cmd = procfs::cmdline(pid)
                .map(|args| args.join(" "))
                .unwrap_or_default();
            let cmd = if cmd.is_empty() {
                String::new()
            } else {
                format!(" `{}`", cmd.chars().take(80).collect::<String>())
            };
            format!("pid {pid}{cmd}{since}; {record}")
        }
    }
}
