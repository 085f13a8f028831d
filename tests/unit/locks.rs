//! The pure parts of the lock layer: name validation, lock paths, owner
//! records, `/proc/locks` and fdinfo parsing, the holder decision,
//! CCCI_LOCK_MAX_AGE, and which lock `unlock NAME` means.

use std::path::Path;
use std::time::Duration;

use cc_ci_run::cmd::locks;
use cc_ci_run::config::names::validate_name;
use cc_ci_run::exit;
use cc_ci_run::lock::flock::holder::{
    decide, dev_major_minor, parse_fdinfo_locks, parse_lock_line, parse_proc_locks, Evidence,
    FileId, Holder, Listed,
};
use cc_ci_run::lock::report::{LockReport, State};
use cc_ci_run::lock::{self, Kind, OwnerRecord, Role};
use cc_ci_run::sys::procfs::start_ticks;

fn usage_message(kind: Kind, name: &str) -> String {
    let err = validate_name(kind, name).expect_err(&format!("{name:?} must be refused"));
    assert_eq!(exit::code_for(&err), exit::USAGE, "{name:?}: {err:#}");
    format!("{err:#}")
}

#[test]
fn valid_names_pass() {
    for d in [
        "app.example.org",
        "nextcloud-pr12.ci.coopcloud.tech",
        "a",
        "x1-y2.z3",
        &format!("{}.org", "a".repeat(63)),
    ] {
        validate_name(Kind::App, d).unwrap();
    }
    for r in ["drone-123", "manual-4567", "0", "a-b-c"] {
        validate_name(Kind::Run, r).unwrap();
    }
}

#[test]
fn bad_names_exit_2_naming_field_and_rule() {
    let cases: &[(Kind, &str, &str)] = &[
        (Kind::App, "", "is empty"),
        (Kind::Run, "", "is empty"),
        (Kind::App, "../etc", "path separator"),
        (Kind::App, "..", "traversal"),
        (Kind::App, "a..b", "traversal"),
        (Kind::Run, ".", "traversal"),
        (Kind::App, "a/b", "path separator"),
        (Kind::Run, "a\\b", "path separator"),
        (Kind::App, "a b", "whitespace"),
        (Kind::Run, "a\tb", "whitespace"),
        (Kind::Run, "a\nb", "whitespace"),
        (Kind::App, "a\u{7}b", "control"),
        (Kind::App, "a$(id)", "metacharacter `$`"),
        (Kind::Run, "a;b", "metacharacter `;`"),
        (Kind::App, "a`b`", "metacharacter"),
        (Kind::App, "a*", "metacharacter `*`"),
        (Kind::App, "App.example.org", "uppercase"),
        (Kind::Run, "Drone-1", "uppercase"),
        (Kind::App, "a_b.org", "contains `_`"),
        (Kind::App, "café.org", "contains"),
        (Kind::Run, "drone.1", "contains `.`"),
        (Kind::Run, "-drone", "starts with `-`"),
        (Kind::App, ".example.org", "empty label"),
        (Kind::App, "example.org.", "empty label"),
        (Kind::App, "-a.org", "starts or ends with `-`"),
        (Kind::App, "a-.org", "starts or ends with `-`"),
    ];
    for (kind, name, problem) in cases {
        let msg = usage_message(*kind, name);
        assert!(msg.contains(problem), "{name:?}: {msg}");
        assert!(
            msg.contains(kind.field()),
            "{name:?} names the field: {msg}"
        );
        let rule = match kind {
            Kind::App => "lowercase DNS names",
            Kind::Run => "[a-z0-9][a-z0-9-]*",
        };
        assert!(msg.contains(rule), "{name:?} states the rule: {msg}");
    }
}

#[test]
fn over_long_names_are_refused_and_not_echoed_in_full() {
    let long_run = "a".repeat(cc_ci_run::config::names::RUN_ID_MAX + 1);
    let limit = format!("over the limit of {}", cc_ci_run::config::names::RUN_ID_MAX);
    assert!(usage_message(Kind::Run, &long_run).contains(&limit));
    validate_name(Kind::Run, &"a".repeat(cc_ci_run::config::names::RUN_ID_MAX)).unwrap();
    let long_label = format!("{}.org", "a".repeat(64));
    assert!(usage_message(Kind::App, &long_label).contains("label of 64"));
    let long_domain = vec!["a".repeat(60); 5].join(".");
    let msg = usage_message(Kind::App, &long_domain);
    assert!(msg.contains("over the limit of 253"), "{msg}");
    assert!(!msg.contains(&long_domain), "the name is cut: {msg}");
}

#[test]
fn control_characters_are_escaped_in_messages() {
    let msg = usage_message(Kind::App, "a\u{1b}[31mred");
    assert!(!msg.contains('\u{1b}'), "{msg:?}");
}

#[test]
fn lock_paths_follow_the_layout() {
    let state = Path::new("/var/lib/cc-ci-run");
    assert_eq!(
        lock::flock::lock_path(state, Kind::App, "a.example.org"),
        Path::new("/var/lib/cc-ci-run/locks/apps/a.example.org.lock")
    );
    assert_eq!(
        lock::flock::lock_path(state, Kind::Run, "drone-7"),
        Path::new("/var/lib/cc-ci-run/locks/runs/drone-7.lock")
    );
}

fn record() -> OwnerRecord {
    OwnerRecord {
        run_id: "drone-7".into(),
        pid: 4242,
        host: "ci1".into(),
        cwd: "/srv/ci".into(),
        started: "2024-05-01T10:00:00.000Z".into(),
        kind: Kind::App,
        role: Role::Run,
    }
}

#[test]
fn owner_records_round_trip_with_documented_field_names() {
    let json = serde_json::to_string(&record()).unwrap();
    assert_eq!(
        json,
        r#"{"run_id":"drone-7","pid":4242,"host":"ci1","cwd":"/srv/ci","started":"2024-05-01T10:00:00.000Z","kind":"app"}"#
    );
    assert_eq!(lock::parse_owner(&format!("{json}\n")), Some(record()));
}

#[test]
fn owner_record_parsing_ignores_the_tail_of_an_older_longer_record() {
    // Between the holder's pwrite and its truncate a reader sees this.
    let new = serde_json::to_string(&record()).unwrap();
    let text = format!("{new}\n-app\",\"kind\":\"run\"}}\n");
    assert_eq!(lock::parse_owner(&text), Some(record()));
}

#[test]
fn missing_empty_or_garbled_owner_records_are_none() {
    for bad in [
        "",
        "\n",
        "{",
        "not json",
        r#"{"run_id":"x"}"#,
        r#"{"run_id":"x","pid":"1","host":"h","cwd":"/","started":"s","kind":"app"}"#,
        r#"{"run_id":"x","pid":1,"host":"h","cwd":"/","started":"s","kind":"other"}"#,
    ] {
        assert_eq!(lock::parse_owner(bad), None, "{bad:?}");
    }
}

#[test]
fn owner_record_for_self_names_this_process() {
    let r = OwnerRecord::for_self("manual-1", Kind::Run);
    assert_eq!(r.pid, std::process::id() as i32);
    assert_eq!(r.kind, Kind::Run);
    assert!(r.started.ends_with('Z') && r.started.contains('T'));
    assert!(r.describe().contains("manual-1"));
}

const PROC_LOCKS: &str = "\
1: FLOCK  ADVISORY  WRITE 1419 fe:00:753934 0 EOF
1: -> FLOCK  ADVISORY  WRITE 1500 fe:00:753934 0 EOF
2: POSIX  ADVISORY  WRITE 812 00:19:1234 0 EOF
3: OFDLCK ADVISORY  READ -1 00:06:3 0 EOF
4: LEASE  ACTIVE    READ 900 103:02:77 0 EOF
5: FLOCK  ADVISORY  WRITE 0 fe:00:99 0 EOF
garbage line
";

#[test]
fn proc_locks_lines_parse_with_hex_device_and_decimal_inode() {
    let lines = parse_proc_locks(PROC_LOCKS);
    assert_eq!(lines.len(), 6, "{lines:?}");
    let first = &lines[0];
    assert_eq!(
        (first.class.as_str(), first.blocked, first.mode.as_str()),
        ("FLOCK", false, "WRITE")
    );
    assert_eq!(
        (first.pid, first.major, first.minor, first.ino),
        (1419, 0xfe, 0, 753934)
    );
    assert!(first.is_granted_flock());
    assert!(lines[1].blocked && !lines[1].is_granted_flock());
    assert_eq!(lines[1].pid, 1500);
    assert_eq!(lines[2].class, "POSIX");
    assert_eq!(lines[3].pid, -1);
    assert_eq!(
        (lines[4].major, lines[4].minor, lines[4].ino),
        (0x103, 2, 77)
    );
    assert_eq!(lines[5].pid, 0);
}

#[test]
fn fdinfo_lock_lines_parse() {
    let fdinfo = "pos:\t0\nflags:\t02100002\nmnt_id:\t29\nino:\t753934\nlock:\t1: FLOCK  ADVISORY  WRITE 1419 fe:00:753934 0 EOF\n";
    let locks = parse_fdinfo_locks(fdinfo);
    assert_eq!(locks.len(), 1);
    assert_eq!((locks[0].pid, locks[0].ino), (1419, 753934));
    assert!(parse_fdinfo_locks("pos:\t0\nflags:\t02\n").is_empty());
    assert_eq!(parse_lock_line("1: FLOCK ADVISORY"), None);
}

#[test]
fn stat_device_numbers_split_like_glibc() {
    // 0xfe00 is 254:0 (what `stat -c %D` prints as fe00).
    assert_eq!(dev_major_minor(0xfe00), (0xfe, 0));
    assert_eq!(dev_major_minor(0x10302), (0x103, 2));
    let id = FileId {
        dev: 0xfe00,
        ino: 753934,
    };
    let line = parse_lock_line("1: FLOCK  ADVISORY  WRITE 1419 fe:00:753934 0 EOF").unwrap();
    assert!(line.on(id));
}

fn evidence(listed: Listed, taker: Option<i32>) -> Evidence {
    Evidence {
        listed,
        taker,
        taker_alive: true,
        taker_holds: Some(true),
        sharers: vec![],
    }
}

#[test]
fn holder_is_the_live_taker_that_holds_it() {
    let e = evidence(Listed::Exact, Some(10));
    assert_eq!(decide(&e), Holder::Held { pid: Some(10) });
    // Its descriptors could not be read (another user): trust /proc/locks.
    let e = Evidence {
        taker_holds: None,
        ..evidence(Listed::Exact, Some(10))
    };
    assert_eq!(decide(&e), Holder::Held { pid: Some(10) });
}

#[test]
fn holder_is_corrected_when_the_taker_has_exited() {
    // `flock -x 9` in a shell: the flock process took it and exited.
    let e = Evidence {
        taker_alive: false,
        taker_holds: None,
        sharers: vec![31, 30],
        ..evidence(Listed::Exact, Some(29))
    };
    assert_eq!(decide(&e), Holder::Held { pid: Some(30) });
    // A recycled pid that does not hold the lock is not the holder either.
    let e = Evidence {
        taker_holds: Some(false),
        sharers: vec![44],
        ..evidence(Listed::Exact, Some(29))
    };
    assert_eq!(decide(&e), Holder::Held { pid: Some(44) });
}

#[test]
fn lock_is_free_when_the_taker_is_dead_and_nobody_has_it() {
    let e = Evidence {
        taker_alive: false,
        taker_holds: None,
        ..evidence(Listed::Exact, Some(29))
    };
    assert_eq!(decide(&e), Holder::Free);
    // The kernel gave no pid (taker gone in another pid namespace).
    let e = Evidence {
        taker_alive: false,
        taker_holds: None,
        ..evidence(Listed::Exact, None)
    };
    assert_eq!(decide(&e), Holder::Free);
    assert_eq!(decide(&evidence(Listed::No, None)), Holder::Free);
}

#[test]
fn an_inode_match_under_another_device_needs_a_descriptor_to_count() {
    let e = Evidence {
        taker_holds: None,
        ..evidence(Listed::InodeOnly, Some(10))
    };
    assert_eq!(decide(&e), Holder::Free);
    let e = evidence(Listed::InodeOnly, Some(10));
    assert_eq!(decide(&e), Holder::Held { pid: Some(10) });
}

#[test]
fn process_start_ticks_skip_a_command_name_with_spaces_and_parens() {
    let stat = "1234 (a b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10 18446744073709551615";
    assert_eq!(start_ticks(stat), Some(98765));
}

#[test]
fn lock_max_age_defaults_to_2h_and_rejects_bad_values_naming_the_variable() {
    assert_eq!(
        cc_ci_run::config::lock_max_age_value(None).unwrap(),
        Duration::from_secs(7200)
    );
    assert_eq!(
        cc_ci_run::config::lock_max_age_value(Some("90m")).unwrap(),
        Duration::from_secs(5400)
    );
    for bad in ["", "2 hours", "1.5h", "-1"] {
        let err = cc_ci_run::config::lock_max_age_value(Some(bad)).unwrap_err();
        assert_eq!(exit::code_for(&err), exit::USAGE);
        assert!(format!("{err:#}").contains("CCCI_LOCK_MAX_AGE"), "{err:#}");
    }
}

#[test]
fn unlock_name_resolves_to_the_one_existing_lock() {
    let only = |k: Kind| move |x: Kind| x == k;
    assert_eq!(
        cc_ci_run::lock::flock::admin::resolve_kind("a.example.org", None, only(Kind::App))
            .unwrap(),
        Kind::App
    );
    assert_eq!(
        cc_ci_run::lock::flock::admin::resolve_kind("drone-7", None, only(Kind::Run)).unwrap(),
        Kind::Run
    );
    // A dotted name is never a run id, even if asked.
    let err =
        cc_ci_run::lock::flock::admin::resolve_kind("a.example.org", Some(Kind::Run), |_| true)
            .unwrap_err();
    assert_eq!(exit::code_for(&err), exit::USAGE);
    // Both exist: ambiguous, say how to choose.
    let err = cc_ci_run::lock::flock::admin::resolve_kind("drone-7", None, |_| true).unwrap_err();
    assert_eq!(exit::code_for(&err), exit::USAGE);
    assert!(format!("{err:#}").contains("--kind"));
    assert_eq!(
        cc_ci_run::lock::flock::admin::resolve_kind("drone-7", Some(Kind::App), |_| true).unwrap(),
        Kind::App
    );
    // Neither exists: nothing to remove, exit 1.
    let err = cc_ci_run::lock::flock::admin::resolve_kind("drone-7", None, |_| false).unwrap_err();
    assert_eq!(exit::code_for(&err), exit::TESTS_FAILED);
}

#[test]
fn unlock_name_invalid_for_both_kinds_is_usage() {
    for bad in ["", "../x", "a b", "A", "x;rm", &"a".repeat(300)] {
        let err = cc_ci_run::lock::flock::admin::resolve_kind(bad, None, |_| {
            panic!("nothing is looked up")
        })
        .unwrap_err();
        assert_eq!(exit::code_for(&err), exit::USAGE, "{bad:?}");
    }
}

#[test]
fn the_table_flags_stale_records_and_old_locks() {
    let held = LockReport {
        name: "a.example.org".into(),
        kind: Kind::App,
        path: "/s/locks/apps/a.example.org.lock".into(),
        state: State::Held,
        holder_pid: Some(77),
        taker_pid: Some(77),
        owner: Some(record()),
        owner_matches: false,
        since: None,
        age_secs: Some(3 * 3600),
        over_max_age: true,
    };
    let text = locks::table(&[held]);
    assert!(text.contains("stale record"), "{text}");
    assert!(text.contains("CCCI_LOCK_MAX_AGE"), "{text}");
    assert!(text.contains(" 77 "), "{text}");
    assert_eq!(locks::table(&[]), "no locks\n");
}

#[test]
fn a_janitors_owner_record_says_janitor_and_a_record_without_a_role_is_a_runs() {
    let j = OwnerRecord::for_janitor(Kind::Run);
    assert_eq!(j.role, Role::Janitor);
    let json = serde_json::to_string(&j).unwrap();
    assert!(json.contains(r#""role":"janitor""#), "{json}");
    assert_eq!(
        lock::parse_owner(&json).map(|r| r.role),
        Some(Role::Janitor)
    );
    // A run's record never names a janitor, whatever its run id says.
    let named_like_one = OwnerRecord::for_self("janitor-1", Kind::Run);
    assert_eq!(named_like_one.role, Role::Run);
    let old = r#"{"run_id":"drone-7","pid":1,"host":"h","cwd":"/","started":"s","kind":"run"}"#;
    assert_eq!(lock::parse_owner(old).map(|r| r.role), Some(Role::Run));
}
