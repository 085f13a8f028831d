//! What a test left behind: members of its process group, processes that
//! left the group and were re-parented to us (the runner is a child
//! subreaper), recognised by the `CCCI_TEST_SUITE`/`CCCI_TEST_NAME` pair in
//! `/proc/PID/environ`, and their descendants; all ended with the one
//! escalation of `sys::kill`.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use nix::errno::Errno;
use nix::sys::signal::killpg;
use nix::unistd::Pid;

use super::Runner;
use crate::say;
use crate::sys::{kill, procfs};

/// The environment variable that marks a test's processes as this suite's.
pub(crate) const SUITE_MARK: &str = "CCCI_TEST_SUITE";

/// The environment variable that names the test a process belongs to.
pub(crate) const TEST_NAME: &str = "CCCI_TEST_NAME";

/// A marker unique to this suite in this process and host.
pub(super) fn suite_token() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!(
        "{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The test a process belongs to, if it carries this suite's mark: read
/// from its environment, which every process of a test inherits unless it
/// deliberately clears it.
pub(super) fn test_of(pid: i32, token: &str) -> Option<String> {
    let env = procfs::environ(pid)?;
    let mut marked = false;
    let mut name = None;
    for var in env.split(|&b| b == 0) {
        if let Some(v) = var.strip_prefix(format!("{SUITE_MARK}=").as_bytes()) {
            marked = v == token.as_bytes();
        } else if let Some(v) = var.strip_prefix(format!("{TEST_NAME}=").as_bytes()) {
            name = Some(String::from_utf8_lossy(v).into_owned());
        }
    }
    if marked {
        name
    } else {
        None
    }
}

impl Runner<'_> {
    pub(super) fn running_leaders(&self) -> HashSet<i32> {
        self.running.iter().map(|r| r.child.pid.as_raw()).collect()
    }
    /// Ends what test `name` (leader `pgid`, already reaped) left behind;
    /// returns their pids.
    pub(super) fn end_leftovers(&self, pgid: i32, name: &str) -> Vec<i32> {
        let leaders = self.running_leaders();
        // Fast path, no /proc scan: the group is empty and we have no child
        // besides the running tests' leaders.
        let group_empty = killpg(Pid::from_raw(pgid), None) == Err(Errno::ESRCH);
        let strays = procfs::own_children().map(|c| c.iter().any(|p| !leaders.contains(p)));
        if group_empty && strays == Some(false) {
            return Vec::new();
        }
        let me = std::process::id() as i32;
        let token = self.token.as_str();
        let found = kill::escalate(self.suite.grace, |procs| {
            let roots = procs.iter().filter(|p| {
                p.pgid == pgid
                    || (p.ppid == me
                        && !p.zombie
                        && !leaders.contains(&p.pid)
                        && test_of(p.pid, token).as_deref() == Some(name))
            });
            procfs::with_descendants(procs, roots.map(|p| p.pid))
        });
        found.into_iter().collect()
    }
    /// End of suite: anything still alive that carries this suite's mark
    /// (left by a test after its own check, or by a test whose check could
    /// not see it) is ended; it is blamed on the test it names.
    pub(super) fn sweep_leftovers(&mut self) {
        let me = std::process::id() as i32;
        let token = self.token.clone();
        let mut names: HashMap<i32, String> = HashMap::new();
        let found = kill::escalate(self.suite.grace, |procs| {
            let mine: Vec<i32> = procfs::proc_descendants(procs, me)
                .into_iter()
                .filter(|pid| match test_of(*pid, &token) {
                    Some(n) => {
                        names.insert(*pid, n);
                        true
                    }
                    None => false,
                })
                .collect();
            procfs::with_descendants(procs, mine.into_iter())
        });
        for pid in found {
            let idx = names
                .get(&pid)
                .and_then(|n| self.tests.iter().position(|t| &t.name == n));
            match idx.and_then(|i| self.results[i].as_mut()) {
                Some(rep) => {
                    say!(
                        "{}: leftover process {pid} killed at the end of the suite",
                        rep.name
                    );
                    rep.leaky = true;
                    rep.leaked_pids.push(pid);
                }
                None => self.unattributed.push(pid),
            }
        }
        if !self.unattributed.is_empty() {
            say!(
                "killed {} leftover process(es) of this suite: {:?}",
                self.unattributed.len(),
                self.unattributed
            );
        }
    }
}
