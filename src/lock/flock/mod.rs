//! The flock backend (SPEC section 4): kernel `flock` locks on files as
//! RAII values, app-domain locks `locks/apps/<domain>.lock` and run locks
//! `locks/runs/<run-id>.lock` under the state directory, with the holder's
//! owner record inside; who holds one by the kernel's view ([`holder`]).
//!
//! The races this module closes, one sentence each where the code depends on
//! them:
//! - a lock file is opened with `O_NOFOLLOW`, so a symlink planted at a lock
//!   path is refused instead of followed (its target is never opened, never
//!   created, never written);
//! - every descriptor is opened `O_CLOEXEC`, so no child we start ever holds
//!   one of our locks after we are gone;
//! - flock follows the open file description, and a lock on an unlinked inode
//!   is worthless: between our `open` and our `flock` the holder may unlink
//!   the file (`unlock`, the janitor), and a third process may create a new
//!   file at the path and lock that one. So after every acquisition we check
//!   that the path still names the inode we locked (`fstat` vs `lstat`: device
//!   and inode) and, on a mismatch, drop the lock and start over;
//! - a lock file is only ever unlinked by a process that holds it, after the
//!   same check ([`Held::remove`]): no path can unlink a file that someone
//!   else re-created and locked in between;
//! - releasing is closing the descriptor, which the kernel also does on any
//!   death, SIGKILL included, so a dead holder never keeps a lock.
//!
//! Waiting is interruptible: a blocking `flock` cannot be polled, so
//! [`acquire`] parks it on a helper thread that owns its own open of the file
//! and reports through a pipe; the caller polls that pipe together with the
//! shutdown latch and its progress timer, so it wakes at once when the holder
//! lets go and returns at once when shutdown is requested.

pub mod admin;
pub mod holder;

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io::ErrorKind;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags};

use super::backend::{self, AppLock, AppLocks, Backend, Busy, OnLost};
use super::{describe_owner, parse_owner, Acquired, Attempt, Kind, OwnerRecord, Wait};
use crate::config::names::validate_name;
use crate::sys::latch::{self, Latch};
use holder::FileId;

/// Reads the owner record of a lock file without locking it. A missing file,
/// a symlink, an empty or a garbled record: None.
pub fn read_owner(path: &Path) -> Option<OwnerRecord> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    read_owner_from(&file)
}

/// The longest owner record we read; real ones are a few hundred bytes.
const RECORD_MAX: usize = 64 * 1024;

fn read_owner_from(file: &File) -> Option<OwnerRecord> {
    // The holder writes its record with one pwrite; a reader racing it can
    // see a torn record, so a record that does not parse is read again.
    for _ in 0..3 {
        let text = read_record_bytes(file)?;
        if text.is_empty() {
            return None;
        }
        if let Some(rec) = std::str::from_utf8(&text).ok().and_then(parse_owner) {
            return Some(rec);
        }
    }
    None
}

/// The file's bytes from offset 0, at most [`RECORD_MAX`]. A real record
/// fits the first 4 KiB read, which keeps acquiring cheap.
fn read_record_bytes(file: &File) -> Option<Vec<u8>> {
    let mut text = Vec::new();
    let mut chunk = [0u8; 4096];
    while text.len() < RECORD_MAX {
        match file.read_at(&mut chunk, text.len() as u64) {
            Ok(0) => break,
            Ok(n) => text.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(text)
}

/// `<state_dir>/locks/<apps|runs>`.
pub(crate) fn lock_dir(state_dir: &Path, kind: Kind) -> PathBuf {
    state_dir.join("locks").join(kind.dir_name())
}

/// `<state_dir>/locks/apps/<domain>.lock` or `<state_dir>/locks/runs/<run-id>.lock`.
/// Pure: validate the name first ([`validate_name`]).
pub fn lock_path(state_dir: &Path, kind: Kind, name: &str) -> PathBuf {
    lock_dir(state_dir, kind).join(format!("{name}.lock"))
}

/// Creates `locks/` and `locks/<kind>/` (0755 whatever the umask) when they
/// are missing. A non-directory in their place is an error, never replaced.
fn create_lock_dirs(state_dir: &Path, kind: Kind) -> Result<()> {
    let locks = state_dir.join("locks");
    for dir in [state_dir, &locks, &lock_dir(state_dir, kind)] {
        match DirBuilder::new().mode(0o755).create(dir) {
            Ok(()) => std::fs::set_permissions(dir, Permissions::from_mode(0o755))
                .with_context(|| format!("failed to set mode 0755 on {}", dir.display()))?,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                let meta = std::fs::metadata(dir)
                    .with_context(|| format!("failed to inspect {}", dir.display()))?;
                if !meta.is_dir() {
                    bail!("{} exists and is not a directory", dir.display());
                }
            }
            Err(e) if e.kind() == ErrorKind::NotFound && dir == state_dir => {
                DirBuilder::new()
                    .mode(0o755)
                    .recursive(true)
                    .create(dir)
                    .with_context(|| {
                        format!("failed to create the state directory {}", dir.display())
                    })?;
            }
            Err(e) => return Err(e).with_context(|| format!("failed to create {}", dir.display())),
        }
    }
    Ok(())
}

/// Whether to create a missing lock file (and its directories).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Missing {
    Create,
    Absent,
}

/// Opens a lock file read-write, `O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK`,
/// with the device and inode it names. A new file is created 0644
/// (whatever the umask); a symlink or anything but a regular file at the
/// path is refused. `Ok(None)`: the file does not exist and `missing` is
/// [`Missing::Absent`].
fn open_lock_file(path: &Path, missing: Missing) -> Result<Option<(File, FileId, Mtime)>> {
    let open = |create: bool| {
        let mut o = OpenOptions::new();
        o.read(true).write(true);
        if create {
            // O_EXCL: we know the file is ours to chmod; it never follows a symlink.
            o.create_new(true).mode(0o644);
        }
        // std adds O_CLOEXEC itself; O_NONBLOCK keeps a planted FIFO from hanging us.
        o.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
    };
    let checked = |file: File| {
        let meta = file
            .metadata()
            .with_context(|| format!("failed to fstat lock file {}", path.display()))?;
        if !meta.is_file() {
            return Err(refused(path, "a special file or directory"));
        }
        Ok(Some((file, FileId::of(&meta), meta.modified().ok())))
    };
    // The file usually exists: open it first, create it only when missing.
    for _ in 0..100 {
        match open(false) {
            Ok(file) => return checked(file),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(refused(path, "a symbolic link"))
            }
            Err(e) if e.kind() == ErrorKind::NotFound && missing == Missing::Absent => {
                return Ok(None)
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("failed to open lock file {}", path.display()))
            }
        }
        match open(true) {
            Ok(file) => {
                file.set_permissions(Permissions::from_mode(0o644))
                    .with_context(|| {
                        format!("failed to set mode 0644 on lock file {}", path.display())
                    })?;
                return checked(file);
            }
            // Someone else created it in between (or planted something): open again.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            // NotFound here means the directories are missing: the caller makes them.
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("failed to create lock file {}", path.display()))
            }
        }
    }
    bail!(
        "lock file {} keeps appearing and disappearing while opening it",
        path.display()
    )
}

fn refused(path: &Path, what: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "refusing lock file {}: it is {what}, not a regular file (planted?); remove it",
        path.display()
    )
}

/// `flock(2)` on a descriptor; `EINTR` is returned to the caller.
fn flock(fd: BorrowedFd<'_>, op: libc::c_int) -> std::io::Result<()> {
    // SAFETY: plain system call on a descriptor we borrow for its duration.
    if unsafe { libc::flock(fd.as_raw_fd(), op) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// One non-blocking attempt: true when we now hold the lock on `file`.
fn try_flock(file: &File, path: &Path) -> Result<bool> {
    loop {
        match flock(file.as_fd(), libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => return Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => return Ok(false),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e).with_context(|| format!("failed to flock {}", path.display())),
        }
    }
}

/// Whether `path` still names `locked`, the inode we hold a lock on. False
/// when the path is gone or names another file: then our lock is on an
/// unlinked inode and protects nothing.
fn still_named(locked: FileId, path: &Path) -> Result<bool> {
    match std::fs::symlink_metadata(path) {
        Ok(now) => Ok(FileId::of(&now) == locked),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("failed to stat lock file {}", path.display())),
    }
}

/// An exclusive flock on a lock file, held for as long as this value lives.
/// Dropping it clears the owner record and closes the descriptor, which
/// releases the lock.
#[derive(Debug)]
pub struct Held {
    file: File,
    /// The inode `file` is on (fstat when it was opened).
    id: FileId,
    path: PathBuf,
    /// The file's length as we last left it (truncates cost more than
    /// everything else in an acquire on ext4, so we skip needless ones).
    len: u64,
    previous: Option<OwnerRecord>,
    /// Set by [`Held::remove`]: the file is unlinked, nothing to clear.
    removed: bool,
}

impl Held {
    fn new(file: File, id: FileId, path: PathBuf) -> Held {
        // Whatever the last holder left: a record here means it died holding
        // the lock (a clean release clears it). The janitor names that run.
        // We hold the lock, so nobody writes while we read: this is also the
        // file's length, which spares a truncate when it is already empty.
        let bytes = read_record_bytes(&file);
        let previous = bytes
            .as_deref()
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(parse_owner);
        let len = match bytes {
            Some(b) if b.len() < RECORD_MAX => b.len() as u64,
            _ => u64::MAX, // unknown or huge: always truncate
        };
        Held {
            file,
            id,
            path,
            previous,
            len,
            removed: false,
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The owner record the file held when we acquired it: the last holder,
    /// if it did not release cleanly (it died holding the lock).
    pub(crate) fn previous_owner(&self) -> Option<&OwnerRecord> {
        self.previous.as_ref()
    }

    /// Replaces the owner record in the locked file: one `pwrite` at offset
    /// 0, then a truncate to its length if the file was longer, so a reader
    /// sees the new record (perhaps followed by the tail of the old one,
    /// which it ignores).
    pub(crate) fn write_owner(&mut self, rec: &OwnerRecord) -> Result<()> {
        let mut line = serde_json::to_vec(rec).context("failed to encode the owner record")?;
        line.push(b'\n');
        let new_len = line.len() as u64;
        let what = || {
            format!(
                "failed to write the owner record into lock file {}",
                self.path.display()
            )
        };
        self.file.write_all_at(&line, 0).with_context(what)?;
        if self.len > new_len {
            self.file.set_len(new_len).with_context(what)?;
        }
        self.len = new_len;
        Ok(())
    }

    /// Unlinks the lock file while still holding it, then releases. The
    /// path is re-checked first: if it names another file (someone removed
    /// ours outside this protocol and a new one was made), that file is left
    /// alone. Sound because only a holder unlinks: while we hold our inode
    /// and it is at the path, nobody else can unlink it.
    pub fn remove(mut self) -> Result<()> {
        if still_named(self.id, &self.path)? {
            std::fs::remove_file(&self.path)
                .with_context(|| format!("failed to remove lock file {}", self.path.display()))?;
        }
        self.removed = true;
        Ok(())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if !self.removed && self.len > 0 {
            // A clean release leaves no record behind, so a record in a free
            // lock file means its holder died. Best effort: the close below
            // releases the lock whatever happens here.
            let _ = self.file.set_len(0);
        }
    }
}

/// A flock attempt: the lock, or the holder's owner record if it wrote one.
pub type TryLock = Attempt<Held, Option<OwnerRecord>>;
/// A blocking flock acquisition.
pub type Acquire = Acquired<Held>;

/// How many times an acquisition starts over because the path was replaced
/// under us before giving up (each time, someone else made progress).
const MAX_REPLACED: usize = 10_000;

/// Takes the lock without waiting (the janitor's probe, the run lock). On
/// success writes `owner` into the file. Creates the lock directories and
/// the file on first use.
pub fn try_acquire(
    state_dir: &Path,
    kind: Kind,
    name: &str,
    owner: &OwnerRecord,
) -> Result<TryLock> {
    Ok(match try_acquire_dated(state_dir, kind, name, owner)? {
        Attempt::Acquired(held) => Attempt::Acquired(held),
        Attempt::Busy((rec, _)) => Attempt::Busy(rec),
    })
}

/// A lock file's modification time (when its holder wrote its record: the
/// lock's age), read from the fstat of the open.
pub type Mtime = Option<std::time::SystemTime>;

/// A flock attempt that also dates a busy lock: the holder's owner record
/// and the lock file's [`Mtime`].
pub type DatedTryLock = Attempt<Held, (Option<OwnerRecord>, Mtime)>;

/// [`try_acquire`], with a busy lock's file mtime taken from the fstat its
/// open makes anyway: the janitor's probe ages a held lock without a
/// second stat of the path per candidate.
pub fn try_acquire_dated(
    state_dir: &Path,
    kind: Kind,
    name: &str,
    owner: &OwnerRecord,
) -> Result<DatedTryLock> {
    validate_name(kind, name)?;
    let path = lock_path(state_dir, kind, name);
    let what = || format!("failed to lock {} `{name}`", kind.field());
    let mut held = match try_path_dated(&path, Missing::Create).with_context(what)? {
        Some(Attempt::Acquired(held)) => held,
        Some(Attempt::Busy(busy)) => return Ok(Attempt::Busy(busy)),
        // Missing::Create creates the file; it cannot be absent.
        None => {
            return Err(anyhow::anyhow!("lock file {} vanished", path.display())).with_context(what)
        }
    };
    keep_without_record(&mut held, owner);
    Ok(Attempt::Acquired(held))
}

/// Writes the owner record; a failure (a full disk) is said and the lock
/// kept: the flock is the claim, the record only information, and a
/// janitor that gave up a claim because it could not write a record could
/// never reap on a full disk (SPEC section 1).
fn keep_without_record(held: &mut Held, owner: &OwnerRecord) {
    if let Err(e) = held.write_owner(owner) {
        crate::log::write_failed(
            &format!(
                "the owner record into lock file {} (the lock is held; readers see no owner record)",
                held.path().display()
            ),
            &e,
        );
    }
}

/// A non-blocking attempt on a lock file by path. Used by `unlock` on an
/// existing file (`create == false`: never creates the file or its
/// directories).
/// None: there is no such file.
pub(crate) fn try_lock_existing(path: &Path) -> Result<Option<TryLock>> {
    try_path(path, Missing::Absent)
}

fn try_path(path: &Path, missing: Missing) -> Result<Option<TryLock>> {
    Ok(try_path_dated(path, missing)?.map(|a| match a {
        Attempt::Acquired(held) => Attempt::Acquired(held),
        Attempt::Busy((rec, _)) => Attempt::Busy(rec),
    }))
}

fn try_path_dated(path: &Path, missing: Missing) -> Result<Option<DatedTryLock>> {
    for _ in 0..MAX_REPLACED {
        let (file, id, mtime) = match open_lock_file(path, missing) {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(None),
            Err(e) if missing == Missing::Create && is_not_found(&e) => {
                create_lock_dirs_for(path)?;
                continue;
            }
            Err(e) => return Err(e),
        };
        if !try_flock(&file, path)? {
            return Ok(Some(Attempt::Busy((read_owner_from(&file), mtime))));
        }
        if still_named(id, path)? {
            return Ok(Some(Attempt::Acquired(Held::new(
                file,
                id,
                path.to_path_buf(),
            ))));
        }
    }
    bail!(
        "lock file {} was replaced {MAX_REPLACED} times while locking it",
        path.display()
    )
}

fn is_not_found(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == ErrorKind::NotFound)
}

/// Creates the directories of a lock path (`<state>/locks/<kind>/<name>.lock`).
fn create_lock_dirs_for(path: &Path) -> Result<()> {
    let kind_dir = path.parent().context("lock path has no directory")?;
    let kind = match kind_dir.file_name().and_then(|n| n.to_str()) {
        Some("apps") => Kind::App,
        Some("runs") => Kind::Run,
        _ => bail!("{} is not a lock path", path.display()),
    };
    let state_dir = kind_dir
        .parent()
        .and_then(Path::parent)
        .context("lock path has no state directory")?;
    create_lock_dirs(state_dir, kind)
}

/// Takes the lock, waiting for the holder as long as needed, until
/// `deadline`, or until `cancel` is set. While it waits, `progress` is called
/// with the holder's owner record and the time waited so far: once when the
/// lock is first found busy, then every `progress_every` (zero: only once).
/// On success writes `owner` into the file.
///
/// After `TimedOut` or `Cancelled`, a helper thread may stay parked in
/// `flock` until the holder lets go; it then releases at once and ends.
/// It holds one descriptor (close-on-exec) meanwhile.
pub fn acquire(
    state_dir: &Path,
    kind: Kind,
    name: &str,
    owner: &OwnerRecord,
    wait: Wait<'_>,
) -> Result<Acquire> {
    let Wait {
        deadline,
        cancel,
        progress_every,
        progress,
    } = wait;
    validate_name(kind, name)?;
    let path = lock_path(state_dir, kind, name);
    let what = || format!("failed to lock {} `{name}`", kind.field());
    let outcome =
        acquire_path(&path, deadline, cancel, progress_every, progress).with_context(what)?;
    match outcome {
        Acquire::Acquired(mut held) => {
            keep_without_record(&mut held, owner);
            Ok(Acquire::Acquired(held))
        }
        other => Ok(other),
    }
}

/// [`acquire`] on a lock path, without writing an owner record.
pub(crate) fn acquire_path(
    path: &Path,
    deadline: Option<Instant>,
    cancel: Option<&Latch>,
    progress_every: Duration,
    progress: &mut dyn FnMut(Option<&OwnerRecord>, Duration),
) -> Result<Acquire> {
    let started = Instant::now();
    let mut reported = false;
    let mut next_progress: Option<Instant> = None;
    for _ in 0..MAX_REPLACED {
        if cancel.is_some_and(Latch::is_set) {
            return Ok(Acquire::Cancelled);
        }
        let (file, id, _) = match open_lock_file(path, Missing::Create) {
            Ok(Some(f)) => f,
            Ok(None) => continue,
            Err(e) if is_not_found(&e) => {
                create_lock_dirs_for(path)?;
                continue;
            }
            Err(e) => return Err(e),
        };
        if try_flock(&file, path)? {
            if still_named(id, path)? {
                return Ok(Acquire::Acquired(Held::new(file, id, path.to_path_buf())));
            }
            continue;
        }
        if !reported {
            progress(read_owner_from(&file).as_ref(), started.elapsed());
            reported = true;
            next_progress = periodic(Instant::now(), progress_every);
        }
        let waiter = Waiter::start(file, path)?;
        let got = loop {
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                waiter.abandon();
                return Ok(Acquire::TimedOut);
            }
            if next_progress.is_some_and(|p| now >= p) {
                progress(read_owner(path).as_ref(), started.elapsed());
                next_progress = periodic(now, progress_every);
            }
            let wake = [deadline, next_progress].into_iter().flatten().min();
            let timeout = latch::timeout_until(wake);
            let (polled, hung_up) = {
                let mut fds = vec![PollFd::new(waiter.ready.as_fd(), PollFlags::POLLIN)];
                if let Some(c) = cancel {
                    fds.push(PollFd::new(c.fd(), PollFlags::POLLIN));
                }
                let polled = poll(&mut fds, timeout);
                let hung_up = fds[0]
                    .revents()
                    .is_some_and(|r| r.contains(PollFlags::POLLHUP));
                (polled, hung_up)
            };
            match polled {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => {
                    waiter.abandon();
                    return Err(e).context("poll while waiting for a lock failed");
                }
            }
            // Shutdown wins over a lock that came free at the same moment.
            if cancel.is_some_and(Latch::is_set) {
                waiter.abandon();
                return Ok(Acquire::Cancelled);
            }
            if let Some(result) = waiter.take() {
                break result;
            }
            if hung_up {
                bail!(
                    "the thread waiting for {} ended without a result",
                    path.display()
                );
            }
        };
        let file = got.with_context(|| format!("failed to flock {}", path.display()))?;
        if still_named(id, path)? {
            return Ok(Acquire::Acquired(Held::new(file, id, path.to_path_buf())));
        }
        // We waited on an inode its holder unlinked: start over on the new file.
    }
    bail!(
        "lock file {} was replaced {MAX_REPLACED} times while locking it",
        path.display()
    )
}

/// When the next periodic progress report is due (None: never).
fn periodic(now: Instant, every: Duration) -> Option<Instant> {
    if every.is_zero() {
        None
    } else {
        now.checked_add(every)
    }
}

/// What the helper thread has to say.
enum Slot {
    Waiting,
    Got(std::io::Result<File>),
    /// The caller stopped waiting: release the lock if it is ever granted.
    Abandoned,
    Taken,
}

/// A helper thread parked in a blocking `flock(LOCK_EX)` on its own open
/// of the lock file. It hands the locked file over through `slot` and wakes
/// the caller through a pipe. The thread cannot be interrupted; a caller
/// that gives up marks the slot abandoned, and the thread, once granted
/// the lock, closes the file at once (releasing it) and ends.
struct Waiter {
    slot: Arc<Mutex<Slot>>,
    ready: OwnedFd,
}

fn lock_slot(slot: &Mutex<Slot>) -> std::sync::MutexGuard<'_, Slot> {
    // A poisoned slot only means the other side panicked between two plain
    // assignments; the value is still whole.
    slot.lock().unwrap_or_else(|p| p.into_inner())
}

impl Waiter {
    fn start(file: File, path: &Path) -> Result<Waiter> {
        let (ready, notify) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
            .context("failed to create the lock waiter's pipe")?;
        let slot = Arc::new(Mutex::new(Slot::Waiting));
        let theirs = Arc::clone(&slot);
        std::thread::Builder::new()
            .name("lock-waiter".into())
            .spawn(move || {
                let result = loop {
                    match flock(file.as_fd(), libc::LOCK_EX) {
                        Ok(()) => break Ok(()),
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => break Err(e),
                    }
                };
                let mut slot = lock_slot(&theirs);
                if matches!(*slot, Slot::Abandoned) {
                    // Dropping `file` here releases a lock nobody waits for.
                    return;
                }
                *slot = Slot::Got(result.map(|()| file));
                drop(slot);
                let _ = nix::unistd::write(&notify, b"x");
            })
            .with_context(|| format!("failed to start a thread to wait for {}", path.display()))?;
        Ok(Waiter { slot, ready })
    }

    /// The helper's result once it has one.
    fn take(&self) -> Option<std::io::Result<File>> {
        let mut slot = lock_slot(&self.slot);
        match std::mem::replace(&mut *slot, Slot::Taken) {
            Slot::Got(result) => Some(result),
            other => {
                *slot = other;
                None
            }
        }
    }

    /// Stops waiting: a lock granted in the meantime is released now, one
    /// granted later is released by the helper.
    fn abandon(self) {
        let mut slot = lock_slot(&self.slot);
        // Dropping a granted file (in `Got`) releases its lock.
        *slot = Slot::Abandoned;
    }
}

/// The flock backend behind [`AppLocks`]. `kind` is [`Kind::App`]
/// for the app-domain locks; the run lock (always a flock) can use the
/// same interface with [`Kind::Run`].
pub struct FlockLocks {
    pub state_dir: std::path::PathBuf,
    pub kind: Kind,
}

struct FlockLock(Held);

impl AppLock for FlockLock {
    fn lost(&self) -> Option<String> {
        // The kernel never takes a flock away from a live holder.
        None
    }
    fn may_mutate(&self) -> Result<()> {
        Ok(())
    }
    fn previous_owner(&self) -> Option<OwnerRecord> {
        self.0.previous_owner().cloned()
    }
    fn release(self: Box<Self>) -> Result<()> {
        drop(self);
        Ok(())
    }
    fn remove(self: Box<Self>) -> Result<()> {
        self.0.remove()
    }
}

/// How long ago a lock file was last written (what a flock lock's age is
/// taken from when its owner record says nothing better).
pub fn file_age(path: &std::path::Path) -> Option<Duration> {
    let m = std::fs::metadata(path).ok()?.modified().ok()?;
    std::time::SystemTime::now().duration_since(m).ok()
}

impl AppLocks for FlockLocks {
    fn backend(&self) -> Backend {
        Backend::Flock
    }

    fn list(&self, _max_age: Duration) -> Result<Option<Vec<backend::SwarmLockReport>>> {
        // The lock files are the flock locks: `lock::report` lists them.
        Ok(None)
    }

    fn unlock(&self, request: &backend::Unlock<'_>) -> Result<i32> {
        admin::unlock(&self.state_dir, request)
    }

    fn tidy(&self, _orphaned: &dyn Fn(&str) -> bool, _dry_run: bool) -> Result<usize> {
        // The janitor tidies lock files itself, each under its flock.
        Ok(0)
    }

    fn stress(&self, request: &backend::Stress<'_>) -> Result<String> {
        admin::stress(&self.state_dir, request)
    }

    fn try_acquire(
        &self,
        domain: &str,
        owner: &OwnerRecord,
        _: OnLost,
    ) -> Result<backend::Attempt> {
        // The age from the open's own fstat: no second stat per probe.
        Ok(
            match try_acquire_dated(&self.state_dir, self.kind, domain, owner)? {
                Attempt::Acquired(h) => backend::Attempt::Acquired(Box::new(FlockLock(h))),
                Attempt::Busy((owner, mtime)) => backend::Attempt::Busy(Busy {
                    owner,
                    age: mtime.and_then(|m| std::time::SystemTime::now().duration_since(m).ok()),
                }),
            },
        )
    }

    fn acquire(
        &self,
        domain: &str,
        owner: &OwnerRecord,
        wait: Wait<'_>,
        _: OnLost,
    ) -> Result<backend::Acquired> {
        Ok(
            match acquire(&self.state_dir, self.kind, domain, owner, wait)? {
                Acquire::Acquired(h) => Acquired::Acquired(Box::new(FlockLock(h))),
                Acquire::TimedOut => Acquired::TimedOut,
                Acquire::Cancelled => Acquired::Cancelled,
            },
        )
    }
}
