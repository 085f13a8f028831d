//! What a child is started with, prepared in the parent as C strings
//! before [`super::spawn::spawn`] clones: the program and its arguments,
//! the environment, stdio, the process group, resource limits, the signal
//! mask and the working directory.
//!
//! The spawner's child shares the parent's memory and may neither allocate
//! nor take a lock (see `spawn`), so everything it reads is built here:
//! the `argv` and `envp` arrays, and the paths `execve` tries, searched in
//! the PATH of the child's environment as `execvp` does.
//!
//! An environment is an [`Environ`] built once (the runner's environment
//! plus what every child of a suite gets) and shared by reference; a
//! [`Spec`] adds or overrides single variables on top of it. An override
//! replaces the base entry of the same name, never appends a second one:
//! glibc's `getenv` returns the first match, so a duplicate would be
//! silently ignored by C programs and taken by others.

use std::borrow::Cow;
use std::ffi::{CString, OsStr, OsString};
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::sys::resource::Resource;
use nix::sys::signal::SigSet;

/// How a child's process group is placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// `setsid()`: its own session and process group, out of reach of a kill
    /// of our process group or terminal.
    Session,
    /// `setpgid(0, 0)`: its own process group within our session.
    Group,
}

/// The search path `execvp` uses when the environment has no PATH
/// (glibc's `confstr(_CS_PATH)`).
const DEFAULT_PATH: &[u8] = b"/bin:/usr/bin";

/// An environment as `NAME=value` C strings, each name once.
#[derive(Clone, Debug, Default)]
pub struct Environ {
    vars: Vec<CString>,
    /// A name or value held a NUL byte: no C string can carry it, and
    /// spawning with this environment fails (as `std::process` does).
    saw_nul: bool,
}

impl Environ {
    /// This process's environment.
    pub fn inherited() -> Environ {
        let mut env = Environ::default();
        for (k, v) in std::env::vars_os() {
            env.set(k, v);
        }
        env
    }

    /// Sets `key` to `value`, replacing an entry of the same name.
    pub fn set(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) {
        match entry(key.as_ref(), value.as_ref()) {
            Some(e) => set_entry(&mut self.vars, e),
            None => self.saw_nul = true,
        }
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: impl AsRef<OsStr>) {
        let key = key.as_ref().as_bytes();
        self.vars.retain(|e| name_of(e.as_bytes()) != key);
    }

    /// The value of `key`.
    pub fn get(&self, key: impl AsRef<OsStr>) -> Option<&OsStr> {
        let key = key.as_ref().as_bytes();
        self.vars
            .iter()
            .find(|e| name_of(e.as_bytes()) == key)
            .map(|e| OsStr::from_bytes(&e.as_bytes()[key.len() + 1..]))
    }
}

/// `NAME=value`, or None when either holds a NUL byte.
fn entry(key: &OsStr, value: &OsStr) -> Option<CString> {
    let mut bytes = Vec::with_capacity(key.len() + value.len() + 1);
    bytes.extend_from_slice(key.as_bytes());
    bytes.push(b'=');
    bytes.extend_from_slice(value.as_bytes());
    CString::new(bytes).ok()
}

/// The name of a `NAME=value` entry: up to the first `=`, as `getenv`
/// compares it.
fn name_of(entry: &[u8]) -> &[u8] {
    let end = entry.iter().position(|b| *b == b'=').unwrap_or(entry.len());
    &entry[..end]
}

/// Puts `e` in place of the entry of the same name, or at the end.
fn set_entry(vars: &mut Vec<CString>, e: CString) {
    let name = name_of(e.as_bytes());
    match vars.iter().position(|v| name_of(v.as_bytes()) == name) {
        Some(i) => vars[i] = e,
        None => vars.push(e),
    }
}

/// Where one of the child's standard streams comes from.
#[derive(Clone, Copy, Debug)]
pub enum Stdio<'a> {
    /// The parent's own.
    Inherit,
    /// `/dev/null`.
    Null,
    /// A descriptor of the caller's, which keeps it open until `spawn`
    /// returns.
    Fd(BorrowedFd<'a>),
}

/// Everything a child is started with.
#[derive(Debug)]
pub struct Spec<'a> {
    /// The program as the caller named it (for messages and the search).
    program: OsString,
    argv: Vec<CString>,
    base: Cow<'a, Environ>,
    /// Variables set for this child alone, over `base`; each name once.
    overrides: Vec<CString>,
    saw_nul: bool,
    pub(super) stdio: [Stdio<'a>; 3],
    pub(super) isolation: Isolation,
    pub(super) rlimits: Vec<(Resource, libc::rlimit)>,
    /// None: the child starts with no signal blocked, as `std::process`
    /// children do.
    pub(super) sigmask: Option<SigSet>,
    pub(super) cwd: Option<CString>,
}

impl<'a> Spec<'a> {
    /// `program` (its own argv\[0\]) with the environment `env`, stdio
    /// inherited, in the placement `isolation`.
    pub fn new(program: impl AsRef<OsStr>, env: &'a Environ, isolation: Isolation) -> Spec<'a> {
        Spec::with_env(program.as_ref(), Cow::Borrowed(env), isolation)
    }

    fn with_env(program: &OsStr, base: Cow<'a, Environ>, isolation: Isolation) -> Spec<'a> {
        let mut spec = Spec {
            program: program.to_os_string(),
            argv: Vec::new(),
            saw_nul: base.saw_nul,
            base,
            overrides: Vec::new(),
            stdio: [Stdio::Inherit; 3],
            isolation,
            rlimits: Vec::new(),
            sigmask: None,
            cwd: None,
        };
        spec.arg(program);
        spec
    }

    /// The program, arguments, environment changes and working directory
    /// of a `std::process::Command` (its stdio is not readable and stays
    /// the default, inherited), on this process's environment. An
    /// `env_clear` on the command cannot be seen either: a caller that
    /// must not pass this process's environment on builds its own
    /// [`Environ`] and uses [`Spec::new`].
    pub fn from_command(cmd: &std::process::Command, isolation: Isolation) -> Spec<'static> {
        let mut env = Environ::inherited();
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => env.set(k, v),
                None => env.remove(k),
            }
        }
        let mut spec = Spec::with_env(cmd.get_program(), Cow::Owned(env), isolation);
        spec.args(cmd.get_args());
        if let Some(dir) = cmd.get_current_dir() {
            spec.cwd(dir);
        }
        spec
    }

    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Self {
        match CString::new(arg.as_ref().as_bytes()) {
            Ok(c) => self.argv.push(c),
            Err(_) => self.saw_nul = true,
        }
        self
    }

    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for a in args {
            self.arg(a);
        }
        self
    }

    /// Sets `key` for this child, over the base environment.
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Self {
        match entry(key.as_ref(), value.as_ref()) {
            Some(e) => set_entry(&mut self.overrides, e),
            None => self.saw_nul = true,
        }
        self
    }

    pub fn stdin(&mut self, s: Stdio<'a>) -> &mut Self {
        self.stdio[0] = s;
        self
    }

    pub fn stdout(&mut self, s: Stdio<'a>) -> &mut Self {
        self.stdio[1] = s;
        self
    }

    pub fn stderr(&mut self, s: Stdio<'a>) -> &mut Self {
        self.stdio[2] = s;
        self
    }

    /// A resource limit the child starts with.
    pub fn rlimit(&mut self, resource: Resource, soft: u64, hard: u64) -> &mut Self {
        self.rlimits.push((
            resource,
            libc::rlimit {
                rlim_cur: soft as libc::rlim_t,
                rlim_max: hard as libc::rlim_t,
            },
        ));
        self
    }

    /// The signal mask the child starts with (default: none blocked).
    pub fn sigmask(&mut self, mask: SigSet) -> &mut Self {
        self.sigmask = Some(mask);
        self
    }

    /// The directory the child starts in.
    pub fn cwd(&mut self, dir: impl AsRef<Path>) -> &mut Self {
        match CString::new(dir.as_ref().as_os_str().as_bytes()) {
            Ok(c) => self.cwd = Some(c),
            Err(_) => self.saw_nul = true,
        }
        self
    }

    pub fn program(&self) -> &OsStr {
        &self.program
    }

    /// Whether some string could not become a C string.
    pub(super) fn saw_nul(&self) -> bool {
        self.saw_nul
    }

    pub(super) fn argv(&self) -> &[CString] {
        &self.argv
    }

    /// The child's environment: the base without the names overridden,
    /// then the overrides.
    pub(super) fn envp(&self) -> impl Iterator<Item = &CString> {
        self.base
            .vars
            .iter()
            .filter(|e| {
                let name = name_of(e.as_bytes());
                !self.overrides.iter().any(|o| name_of(o.as_bytes()) == name)
            })
            .chain(&self.overrides)
    }

    /// The paths `execve` tries, in order: the program itself when it
    /// holds a `/`, else each directory of the child's PATH (the default
    /// path without one; an empty element is the working directory), as
    /// `execvp` searches.
    pub fn candidates(&self) -> Vec<CString> {
        let file = self.program.as_bytes();
        if file.contains(&b'/') || file.is_empty() || file.contains(&0) {
            return CString::new(file).into_iter().collect();
        }
        let path = self
            .envp()
            .find_map(|e| e.as_bytes().strip_prefix(b"PATH="))
            .unwrap_or(DEFAULT_PATH);
        path.split(|b| *b == b':')
            .filter_map(|dir| {
                let mut p = Vec::with_capacity(dir.len() + file.len() + 1);
                if !dir.is_empty() {
                    p.extend_from_slice(dir);
                    p.push(b'/');
                }
                p.extend_from_slice(file);
                CString::new(p).ok()
            })
            .collect()
    }
}
