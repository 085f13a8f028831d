//! Reading /proc: the process table, one process's state, start time,
//! descendants, descriptors, environment and command line, our own
//! children, the kernel's list of file locks, and the host's name. Every
//! read of /proc is here (but self-protection's, whose directory a test
//! points elsewhere); the callers parse what is theirs. Read-only: nothing
//! here signals or reaps. A process can vanish between any two reads, so
//! every reader treats a missing entry as "gone", never as an error.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// One process as /proc shows it.
#[derive(Clone, Debug)]
pub struct ProcInfo {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    pub zombie: bool,
}

/// Parses `/proc/PID/stat`; the command name may contain spaces and `)`.
pub fn parse_stat(text: &str) -> Option<ProcInfo> {
    let pid: i32 = text.split(' ').next()?.parse().ok()?;
    // `get`, not indexing: a line cut short after the name is not a panic.
    let rest = text.get(text.rfind(')')? + 2..)?;
    let mut fields = rest.split(' ');
    let state = fields.next()?;
    let ppid: i32 = fields.next()?.parse().ok()?;
    let pgid: i32 = fields.next()?.parse().ok()?;
    Some(ProcInfo {
        pid,
        ppid,
        pgid,
        zombie: state == "Z" || state == "X",
    })
}

/// The pid of every process on the host (empty when /proc cannot be read).
pub(crate) fn pids() -> Vec<i32> {
    each_pid().collect()
}

/// The pids of /proc's entries, as the directory is read.
fn each_pid() -> impl Iterator<Item = i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
}

/// Every process on the host (those that vanish mid-scan are skipped).
pub(crate) fn scan() -> Vec<ProcInfo> {
    // One buffer for the whole scan and one `read` per file: a stat line is
    // well under a page, and `fs::read` would stat the file (size 0 in
    // /proc) and grow its buffer over five reads. Every escalation and
    // end-of-run sweep pays this once per process on the host.
    let mut buf = [0u8; 4096];
    let mut path = String::with_capacity(32);
    each_pid()
        .filter_map(|pid| {
            use std::fmt::Write;
            path.clear();
            let _ = write!(path, "/proc/{pid}/stat");
            let n = read_small(&path, &mut buf)?;
            // Bytes, not a String: the command name is the first 15 bytes
            // of the executable's file name, which may be cut inside a
            // UTF-8 character; such a process must not vanish from the scan.
            parse_stat(&String::from_utf8_lossy(&buf[..n]))
        })
        .collect()
}

/// Reads a /proc file that fits in `buf` with one `read` (the kernel
/// renders such a file whole on the first read); None when it is gone.
fn read_small(path: &str, buf: &mut [u8]) -> Option<usize> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).ok()?;
    let n = f.read(buf).ok()?;
    if n < buf.len() {
        return Some(n);
    }
    // Longer than the buffer (a command name cannot make it so; kept for
    // safety): the whole file, read the ordinary way.
    let mut rest = buf.to_vec();
    f.read_to_end(&mut rest).ok()?;
    let keep = rest.len().min(buf.len());
    buf[..keep].copy_from_slice(&rest[..keep]);
    Some(keep)
}

/// The open descriptors of a process other than 0, 1, 2 (for tests and for
/// the leak check): reads /proc/PID/fd.
pub fn open_fds(pid: i32) -> Vec<i32> {
    let mut fds: Vec<i32> = fds(pid)
        .unwrap_or_default()
        .into_iter()
        .filter(|fd| *fd > 2)
        .collect();
    fds.sort_unstable();
    fds
}

/// Every open descriptor of a process, in /proc's order; None when its
/// /proc/PID/fd cannot be read (gone, or not ours to look at).
pub(crate) fn fds(pid: i32) -> Option<Vec<i32>> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(
        dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect(),
    )
}

/// Where descriptor `fd` of `pid` points, as /proc/PID/fd/FD's link reads
/// (a path, or `socket:[...]` and the like).
pub(crate) fn fd_target(pid: i32, fd: i32) -> Option<PathBuf> {
    std::fs::read_link(fd_path(pid, fd)).ok()
}

/// The metadata of the file descriptor `fd` of `pid` is open on (followed
/// through /proc/PID/fd/FD, so an unlinked file still answers).
pub(crate) fn fd_metadata(pid: i32, fd: i32) -> Option<std::fs::Metadata> {
    std::fs::metadata(fd_path(pid, fd)).ok()
}

fn fd_path(pid: i32, fd: i32) -> String {
    format!("/proc/{pid}/fd/{fd}")
}

/// The text of /proc/PID/fdinfo/FD (its `lock:` lines are the locks held
/// through that descriptor's open file description).
pub(crate) fn fdinfo(pid: i32, fd: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).ok()
}

/// The environment of a process as /proc/PID/environ holds it
/// (`NAME=value` entries, each ended by a NUL byte).
pub(crate) fn environ(pid: i32) -> Option<Vec<u8>> {
    std::fs::read(format!("/proc/{pid}/environ")).ok()
}

/// The arguments of a process from /proc/PID/cmdline, empty ones left out
/// (the last one's terminating NUL reads as one).
pub(crate) fn cmdline(pid: i32) -> Option<Vec<String>> {
    let bytes = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        bytes
            .split(|c| *c == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// Our direct children, from `/proc/self/task/*/children`; None when the
/// kernel does not provide those files. A thread that ends during the scan
/// (an output reader) is skipped: its children, if it had any, pass to a
/// thread that is still there.
pub(crate) fn own_children() -> Option<Vec<i32>> {
    let me = std::process::id().to_string();
    let main = std::fs::read_to_string(format!("/proc/self/task/{me}/children")).ok()?;
    let mut out: Vec<i32> = main
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        if task.file_name().to_str() == Some(me.as_str()) {
            continue;
        }
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    Some(out)
}

/// The text of `/proc/locks`, read so that no granted lock is missed.
///
/// It is a seq_file: each `read` returns at most about a page of lines,
/// and the next `read` walks the kernel's lock list again from a saved
/// index, so a lock released between two reads shifts the list and the
/// line after it is skipped (`read_to_string`, which starts with a tiny
/// probe read, loses lines this way whenever locks churn). A list that
/// fits one read is a consistent snapshot; a longer one is read twice and
/// both texts are returned: a line skipped by one pass is in the other
/// unless locks before it were released during both, and a duplicate or a
/// just-released lock only costs a confirmation that fails.
pub fn locks() -> std::io::Result<String> {
    let (first, reads) = read_all("/proc/locks")?;
    if reads <= 1 {
        return Ok(first);
    }
    let (second, _) = read_all("/proc/locks")?;
    Ok(first + &second)
}

/// A whole file with large reads; also how many reads returned data.
fn read_all(path: &str) -> std::io::Result<(String, usize)> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut text = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut reads = 0;
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                reads += 1;
                text.extend_from_slice(&buf[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((String::from_utf8_lossy(&text).into_owned(), reads))
}

/// Whether a process exists and is not a zombie (a zombie has no
/// descriptors left, so it holds nothing).
pub(crate) fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => crate::sys::procfs::parse_stat(&s).is_some_and(|p| !p.zombie),
        Err(_) => false,
    }
}

/// When a process started (from `/proc/PID/stat` and the boot time), for
/// the age of a lock whose holder wrote no record.
pub(crate) fn process_started(pid: i32) -> Option<SystemTime> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ticks = start_ticks(&stat)?;
    let boot = std::fs::read_to_string("/proc/stat").ok()?;
    let btime: u64 = boot
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz <= 0 {
        return None;
    }
    let since_boot = Duration::from_secs_f64(ticks as f64 / hz as f64);
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(btime) + since_boot)
}

/// Field 22 of `/proc/PID/stat` (start time in clock ticks after boot);
/// the command name (field 2) may hold spaces and `)`.
pub fn start_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 2..];
    // `rest` starts at field 3 (state), so field 22 is the 20th token.
    rest.split(' ').nth(19)?.parse().ok()
}

/// `roots` and all their descendants (zombies included: they are reaped,
/// not signalled).
pub(crate) fn with_descendants(procs: &[ProcInfo], roots: impl Iterator<Item = i32>) -> Vec<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for p in procs {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut seen: BTreeSet<i32> = BTreeSet::new();
    let mut stack: Vec<i32> = roots.collect();
    while let Some(pid) = stack.pop() {
        if seen.insert(pid) {
            stack.extend(children.get(&pid).into_iter().flatten());
        }
    }
    seen.into_iter().collect()
}

/// The descendants of `root` in one scan (zombies included).
pub(crate) fn proc_descendants(procs: &[ProcInfo], root: i32) -> Vec<i32> {
    with_descendants(procs, std::iter::once(root))
        .into_iter()
        .filter(|p| *p != root)
        .collect()
}

/// This host's name, or `unknown-host` (a record is informational; a missing
/// host name must not stop a run).
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown-host".to_string())
}
