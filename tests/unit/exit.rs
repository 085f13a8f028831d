//! The exit-code table and the one mapping from an error to a code
//! (SPEC section 2): the first `Failure` in an error's chain decides, a clap
//! error is a usage error, anything else is an infrastructure failure and
//! never a success.

use anyhow::Context;
use cc_ci_run::exit::{self, code_for, Failure};

#[test]
fn documented_codes() {
    assert_eq!(exit::OK, 0);
    assert_eq!(exit::TESTS_FAILED, 1);
    assert_eq!(exit::USAGE, 2);
    assert_eq!(exit::INFRA, 3);
    assert_eq!(exit::TEARDOWN_FAILED, 4);
    assert_eq!(exit::SELF_PROTECT, 42);
    assert_eq!(exit::DUPLICATE_RUN, 75);
    assert_eq!(exit::SIGHUP, 129);
    assert_eq!(exit::SIGINT, 130);
    assert_eq!(exit::DEADLINE, 142);
    assert_eq!(exit::SIGTERM, 143);
}

#[test]
fn signals_map_to_128_plus_n() {
    for (sig, code) in [
        (libc::SIGHUP, 129),
        (libc::SIGINT, 130),
        (libc::SIGKILL, 137),
        (libc::SIGSEGV, 139),
        (libc::SIGALRM, 142),
        (libc::SIGTERM, 143),
    ] {
        assert_eq!(exit::for_signal(sig), code, "signal {sig}");
    }
}

#[test]
fn a_failure_decides_the_code() {
    for code in [1, 2, 3, 4, 42, 75] {
        let err = Failure::with_code(code, "boom");
        assert_eq!(code_for(&err), code);
    }
    assert_eq!(code_for(&Failure::usage("bad flag")), exit::USAGE);
    assert_eq!(code_for(&Failure::infra("no engine")), exit::INFRA);
}

#[test]
fn context_above_a_failure_keeps_its_code() {
    let err = Err::<(), _>(Failure::usage("`5w` is not a duration"))
        .context("failed to read --timeout")
        .context("failed to validate the run config")
        .expect_err("is an error");
    assert_eq!(code_for(&err), exit::USAGE);
}

#[test]
fn a_failure_raised_with_question_mark_survives_layers_of_context() {
    fn lock() -> anyhow::Result<()> {
        Err(Failure::with_code(exit::DUPLICATE_RUN, "run r-1 is active"))?
    }
    fn start() -> anyhow::Result<()> {
        lock().context("failed to lock run r-1")
    }
    let err = start().context("starting the run").expect_err("fails");
    assert_eq!(code_for(&err), exit::DUPLICATE_RUN);
}

#[test]
fn clap_errors_are_usage_errors() {
    use clap::Parser;
    for argv in [
        &["cc-ci-run", "exec"][..],
        &["cc-ci-run", "exec", "--grace", "5w", "--", "true"][..],
        &["cc-ci-run", "no-such-command"][..],
    ] {
        let e = cc_ci_run::cli::Cli::try_parse_from(argv).expect_err("rejected");
        assert_eq!(code_for(&anyhow::Error::new(e)), exit::USAGE, "{argv:?}");
    }
}

#[test]
fn anything_else_is_an_infrastructure_failure_never_success() {
    let io = std::io::Error::new(std::io::ErrorKind::NotFound, "abra: not found");
    assert_eq!(code_for(&anyhow::Error::new(io)), exit::INFRA);
    assert_eq!(code_for(&anyhow::anyhow!("something odd")), exit::INFRA);
    let wrapped = anyhow::anyhow!("inner").context("outer");
    assert_eq!(code_for(&wrapped), exit::INFRA);
}

#[test]
fn failure_attached_as_context_decides_the_code() {
    use cc_ci_run::exit::{code_for, Failure, INFRA, TESTS_FAILED, USAGE};
    let e = anyhow::anyhow!("abra app deploy failed")
        .context(Failure::of(TESTS_FAILED, "upgrade tier"));
    assert_eq!(code_for(&e), TESTS_FAILED);
    let e = anyhow::anyhow!("x")
        .context(Failure::of(USAGE, "bad"))
        .context("more context");
    assert_eq!(code_for(&e), USAGE);
    assert_eq!(code_for(&anyhow::anyhow!("plain")), INFRA);
}
