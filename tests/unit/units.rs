use cc_ci_run::units::{parse_duration, parse_size};
use std::time::Duration;

#[test]
fn durations_in_every_documented_unit() {
    assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
    assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
    assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
    assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
    assert_eq!(
        parse_duration("7d").unwrap(),
        Duration::from_secs(7 * 86_400)
    );
    assert_eq!(parse_duration("42").unwrap(), Duration::from_secs(42));
}

#[test]
fn durations_reject_everything_else() {
    for bad in [
        "",
        "1.5s",
        "-1s",
        "10 s",
        "5w",
        "1y",
        "ms",
        "1e3",
        "99999999999999s",
    ] {
        assert!(parse_duration(bad).is_err(), "{bad:?} must be rejected");
    }
}

#[test]
fn sizes_are_powers_of_1024() {
    assert_eq!(parse_size("512").unwrap(), 512);
    assert_eq!(parse_size("4K").unwrap(), 4096);
    assert_eq!(parse_size("512M").unwrap(), 512 << 20);
    assert_eq!(parse_size("2G").unwrap(), 2 << 30);
    for bad in ["", "1.5M", "12T", "M", "-3"] {
        assert!(parse_size(bad).is_err(), "{bad:?} must be rejected");
    }
}

#[test]
fn teardown_failure_never_turns_a_red_run_green() {
    use cc_ci_run::exit::*;
    assert_eq!(with_teardown(OK, true), OK);
    assert_eq!(with_teardown(OK, false), TEARDOWN_FAILED);
    assert_eq!(with_teardown(TESTS_FAILED, false), TESTS_FAILED);
    assert_eq!(with_teardown(SIGTERM, false), SIGTERM);
}
