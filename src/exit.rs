//! The exit-code table of SPEC section 2, and the one function that maps an
//! error to a code.
//!
//! Every path out of the binary goes through [`code_for`], so a code is chosen
//! in one place. Errors that must end in a specific code carry a [`Failure`]
//! somewhere in their anyhow chain; anything else is an infrastructure
//! failure (3), never a silent success.

use std::fmt;

/// Tests passed and teardown was clean.
pub const OK: i32 = 0;
/// Tests failed (or a static check of the recipe failed).
pub const TESTS_FAILED: i32 = 1;
/// Bad input or usage: nothing was touched.
pub const USAGE: i32 = 2;
/// Infrastructure failure before or outside the tests (fetch, deploy, convergence, engine).
pub const INFRA: i32 = 3;
/// Tests passed but teardown failed: the app is left for the janitor.
pub const TEARDOWN_FAILED: i32 = 4;
/// The test runner's self-protection stopped the run (resource threshold).
pub const SELF_PROTECT: i32 = 42;
/// `exec` only: CMD exists but could not be executed (the shell's code).
pub const NOT_EXECUTABLE: i32 = 126;
/// `exec` only: CMD was not found (the shell's code).
pub const NOT_FOUND: i32 = 127;
/// Another run with the same run id is active (duplicate prevented).
pub const DUPLICATE_RUN: i32 = 75;
/// Stopped by SIGHUP.
pub const SIGHUP: i32 = 128 + libc::SIGHUP;
/// Stopped by SIGINT.
pub const SIGINT: i32 = 128 + libc::SIGINT;
/// Stopped by the run deadline (SIGALRM).
pub const DEADLINE: i32 = 128 + libc::SIGALRM;
/// Stopped by SIGTERM (also: the parent died).
pub const SIGTERM: i32 = 128 + libc::SIGTERM;

/// Whether an error comes from writing to a closed pipe.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        let kind = c
            .downcast_ref::<std::io::Error>()
            .map(std::io::Error::kind)
            // serde_json wraps the writer's error in its own type.
            .or_else(|| c.downcast_ref::<serde_json::Error>()?.io_error_kind());
        kind == Some(std::io::ErrorKind::BrokenPipe)
    })
}

/// The exit code of a process killed by `signal`: the shell convention.
pub fn for_signal(signal: i32) -> i32 {
    128 + signal
}

/// An error that decides the exit code. Put it at the root of an anyhow chain
/// (`Err(Failure::usage("..."))?`) and add context above it as usual.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl Failure {
    pub fn with_code(code: i32, message: impl Into<String>) -> anyhow::Error {
        anyhow::Error::new(Failure {
            code,
            message: message.into(),
        })
    }

    /// A Failure to attach as context to an error from below, deciding its
    /// exit code: `e.context(Failure::of(INFRA, "deploy failed"))`.
    pub fn of(code: i32, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// Bad input: names the field and the rule. Exit 2.
    pub fn usage(message: impl Into<String>) -> anyhow::Error {
        Self::with_code(USAGE, message)
    }

    pub fn infra(message: impl Into<String>) -> anyhow::Error {
        Self::with_code(INFRA, message)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// The exit code for an error: the first [`Failure`] in its chain decides;
/// a clap error is a usage error; anything else is an infrastructure failure.
pub fn code_for(err: &anyhow::Error) -> i32 {
    // A Failure attached as context (`e.context(Failure::of(..))`) is found
    // by downcasting the error itself; one at the root, through the chain.
    if let Some(f) = err.downcast_ref::<Failure>() {
        return f.code;
    }
    for cause in err.chain() {
        if let Some(f) = cause.downcast_ref::<Failure>() {
            return f.code;
        }
        if cause.downcast_ref::<clap::Error>().is_some() {
            return USAGE;
        }
    }
    INFRA
}

/// Combines the verdict of the tests with the outcome of teardown so that
/// cleanup never masks a failure: a red run stays red, a green run whose
/// teardown failed is not green.
pub fn with_teardown(verdict: i32, teardown_ok: bool) -> i32 {
    match (verdict, teardown_ok) {
        (OK, false) => TEARDOWN_FAILED,
        (code, _) => code,
    }
}
