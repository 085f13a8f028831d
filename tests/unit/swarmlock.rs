//! The pure parts of the swarm lock backend (SPEC section 11): lock object
//! names, lease labels, `docker config inspect` parsing, the lock settings
//! from the environment, the timestamps leases carry, and what `locks`
//! reports about the swarm's lock objects. Nothing here talks to an engine.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use cc_ci_run::cmd::locks::swarm_table;
use cc_ci_run::config::names::check_host_id;
use cc_ci_run::exit;
use cc_ci_run::lock::backend::Lease;
use cc_ci_run::lock::backend::SwarmLockReport;
use cc_ci_run::lock::backend::{Backend, LockSettings};
use cc_ci_run::lock::swarm::swarm_reports;
use cc_ci_run::lock::swarm::{
    classify_refusal, judge_skew, object_name, parse_inspect, skew_ms, LeaseInfo, LockObject,
    Refusal, NAME_MAX,
};
use cc_ci_run::lock::{Kind, OwnerRecord, Role};
use cc_ci_run::log;
use regex::Regex;

// ---------------------------------------------------------------------------
// object_name

/// Docker's rule for config names (`daemon/cluster/convert` in moby).
fn docker_config_name_re() -> Regex {
    Regex::new(r"^[a-zA-Z0-9]+(?:[a-zA-Z0-9-_.]*[a-zA-Z0-9])?$").unwrap()
}

/// A valid app domain of exactly `len` characters made by repeating
/// `pattern` (which starts with a letter and whose labels stay under 64
/// characters); a cut that ends on `.` or `-` ends on `x` instead (on
/// `.x` when that `x` would make a label of 64).
fn domain_of(pattern: &str, len: usize) -> String {
    let mut d: String = pattern.chars().cycle().take(len).collect();
    if d.ends_with(['.', '-']) {
        d.pop();
        d.push('x');
        let last = d.rsplit('.').next().map_or(0, str::len);
        if last > 63 {
            d.truncate(d.len() - 2);
            d.push_str(".x");
        }
    }
    d
}

/// Domains of every length 1..=253 in many shapes. The label widths are
/// the small ones, those around the long form's cut at 36 characters (so
/// the cut lands on a `.`, on a `-`, on `--`, and inside a label) and those
/// at the 63-character limit.
fn all_domains() -> Vec<String> {
    const WIDTHS: [usize; 17] = [
        1, 2, 3, 5, 8, 11, 17, 33, 34, 35, 36, 37, 59, 60, 61, 62, 63,
    ];
    let mut patterns = Vec::new();
    // Labels of at most 62 in the dashed patterns, so a cut's `x` keeps
    // them valid.
    for k in WIDTHS {
        patterns.push(format!("{}.", "a".repeat(k)));
        if k <= 60 {
            patterns.push(format!("{}-c.", "b".repeat(k)));
        }
        if k <= 59 {
            patterns.push(format!("{}--d.", "e".repeat(k)));
        }
    }
    patterns.push("a1-b2.c3--d4.0".to_string());
    let mut domains = Vec::new();
    for p in &patterns {
        for len in 1..=cc_ci_run::config::names::DOMAIN_MAX {
            domains.push(domain_of(p, len));
        }
    }
    domains.sort();
    domains.dedup();
    domains
}

#[test]
fn test_domains_are_valid_app_domains() {
    // The generator is part of the test: if it made invalid domains, the
    // name tests below would prove nothing about real ones.
    let domains = all_domains();
    assert!(domains.len() > 5_000, "{}", domains.len());
    for d in &domains {
        cc_ci_run::config::names::validate_name(Kind::App, d)
            .unwrap_or_else(|e| panic!("{d:?}: {e:#}"));
    }
    let lens: HashSet<usize> = domains.iter().map(String::len).collect();
    assert_eq!(
        lens.len(),
        cc_ci_run::config::names::DOMAIN_MAX,
        "every length 1..=253"
    );
}

#[test]
fn short_domain_is_prefixed_as_it_is() {
    assert_eq!(object_name("a"), "ccci-lock.a");
    assert_eq!(
        object_name("app.ci.coopcloud.tech"),
        "ccci-lock.app.ci.coopcloud.tech"
    );
    // The longest domain that fits: 10 + 54 = 64.
    let d = domain_of("abcdefgh.", 54);
    assert_eq!(object_name(&d), format!("ccci-lock.{d}"));
    assert_eq!(object_name(&d).len(), NAME_MAX);
}

#[test]
fn domain_one_over_the_limit_is_hashed() {
    let d = domain_of("abcdefgh.", 55);
    let name = object_name(&d);
    assert!(name.starts_with("ccci-lockh."), "{name}");
    assert!(name.len() <= NAME_MAX, "{name}");
}

#[test]
fn long_domain_name_is_head_and_sha256_prefix() {
    // Pinned: every host of a swarm must derive the same name, whatever its
    // build, so the hash is SHA-256 (not a per-process hasher) and the
    // layout is fixed. sha256("a"*60 + ".example.org") = 6832fa8aca644246...
    let d = format!("{}.example.org", "a".repeat(60));
    assert_eq!(
        object_name(&d),
        format!("ccci-lockh.{}.6832fa8aca644246", "a".repeat(36))
    );
}

#[test]
fn every_name_is_a_valid_docker_config_name_of_at_most_64_chars() {
    let re = docker_config_name_re();
    for d in all_domains() {
        let name = object_name(&d);
        assert!(name.len() <= NAME_MAX, "{d:?} -> {name:?} ({})", name.len());
        assert!(re.is_match(&name), "{d:?} -> {name:?}");
    }
}

#[test]
fn long_name_ends_with_16_hex_after_a_prefix_of_the_domain() {
    let hashed = Regex::new(r"^ccci-lockh\.([a-z0-9.-]+)\.([0-9a-f]{16})$").unwrap();
    for d in all_domains().iter().filter(|d| d.len() > 54) {
        let name = object_name(d);
        let caps = hashed
            .captures(&name)
            .unwrap_or_else(|| panic!("{d:?} -> {name:?}"));
        let head = &caps[1];
        assert!(d.starts_with(head), "{d:?} -> head {head:?}");
        assert!(!head.ends_with(['.', '-']), "{d:?} -> head {head:?}");
    }
}

#[test]
fn cut_on_a_dot_or_dash_is_trimmed() {
    // The head is the first 36 characters; these put a `.`, a `-` or `--`
    // at its end.
    let tail = "example.org.".repeat(3);
    let tail = tail.trim_end_matches('.');
    for d in [
        format!("{}.{tail}", "a".repeat(35)),
        format!("{}-b.{tail}", "a".repeat(35)),
        format!("{}--b.{tail}", "a".repeat(34)),
    ] {
        assert!(d.len() > 54, "{d}");
        cc_ci_run::config::names::validate_name(Kind::App, &d).unwrap();
        let name = object_name(&d);
        let head = name
            .strip_prefix("ccci-lockh.")
            .and_then(|rest| rest.rsplit_once('.'))
            .map(|(head, _)| head)
            .unwrap_or_else(|| panic!("{name}"));
        assert!(
            head.chars().all(|c| c == 'a'),
            "{d:?} -> head {head:?} of {name:?}"
        );
        assert!(docker_config_name_re().is_match(&name), "{name}");
    }
}

#[test]
fn distinct_domains_get_distinct_names() {
    let mut seen: HashMap<String, String> = HashMap::new();
    for d in all_domains() {
        let name = object_name(&d);
        if let Some(other) = seen.insert(name.clone(), d.clone()) {
            panic!("{d:?} and {other:?} both map to {name:?}");
        }
    }
}

#[test]
fn long_domains_differing_only_at_the_end_get_different_names() {
    let base = "a".repeat(100);
    let a = object_name(&format!("{base}.example.org"));
    let b = object_name(&format!("{base}.example.net"));
    let c = object_name(&format!("{base}.example.orh"));
    assert_ne!(a, b);
    assert_ne!(a, c);
    assert_ne!(b, c);
    // The same head: only the hash tells them apart.
    assert_eq!(a[..a.len() - 16], b[..b.len() - 16]);
}

#[test]
fn long_and_short_names_never_meet() {
    // A short domain starting with `h.` comes closest to the long prefix.
    let short = object_name("h.aaaa");
    assert!(short.starts_with("ccci-lock.h."), "{short}");
    for d in all_domains() {
        let name = object_name(&d);
        if d.len() + "ccci-lock.".len() <= NAME_MAX {
            assert!(name.starts_with("ccci-lock."), "{d:?} -> {name:?}");
        } else {
            assert!(name.starts_with("ccci-lockh."), "{d:?} -> {name:?}");
        }
    }
}

#[test]
fn object_name_is_deterministic() {
    for d in [
        "a".to_string(),
        "app.example.org".to_string(),
        format!("{}.org", "x".repeat(200)),
    ] {
        assert_eq!(object_name(&d), object_name(&d));
    }
}

// ---------------------------------------------------------------------------
// LeaseInfo

fn lease() -> LeaseInfo {
    LeaseInfo {
        domain: "app.ci.localhost".into(),
        host: "runner-2".into(),
        run_id: "drone-77".into(),
        pid: 4242,
        started: "2026-12-01T19:50:50.565Z".into(),
        expires_ms: 1_796_154_680_565,
        lease_ms: 30_000,
        margin_ms: 10_000,
        token: "runner-2-4242-18f3a".into(),
        renewals: 3,
    }
}

/// The labels `from_labels` needs: the wire format other hosts read.
const LEASE_LABELS: [&str; 9] = [
    "cc-ci.lock.domain",
    "cc-ci.lock.host",
    "cc-ci.lock.run-id",
    "cc-ci.lock.pid",
    "cc-ci.lock.started",
    "cc-ci.lock.expires-ms",
    "cc-ci.lock.lease-ms",
    "cc-ci.lock.token",
    "cc-ci.lock.renewals",
];

#[test]
fn lease_labels_round_trip() {
    let info = lease();
    assert_eq!(LeaseInfo::from_labels(&info.labels()), Some(info));
}

#[test]
fn lease_labels_carry_kind_and_readable_expiry() {
    let labels = lease().labels();
    assert_eq!(labels["cc-ci.lock"], "app");
    assert_eq!(labels["cc-ci.lock.domain"], "app.ci.localhost");
    assert_eq!(labels["cc-ci.lock.pid"], "4242");
    assert_eq!(labels["cc-ci.lock.expires-ms"], "1796154680565");
    assert_eq!(labels["cc-ci.lock.expires"], "2026-12-01T19:51:20.565Z");
    assert_eq!(labels["cc-ci.lock.renewals"], "3");
    for k in LEASE_LABELS {
        assert!(labels.contains_key(k), "{k}");
    }
}

#[test]
fn missing_lease_label_gives_none() {
    for k in LEASE_LABELS {
        let mut labels = lease().labels();
        labels.remove(k);
        assert_eq!(LeaseInfo::from_labels(&labels), None, "without {k}");
    }
    assert_eq!(LeaseInfo::from_labels(&HashMap::new()), None);
}

#[test]
fn garbled_numeric_label_gives_none() {
    let cases = [
        ("cc-ci.lock.pid", "abc"),
        ("cc-ci.lock.pid", ""),
        ("cc-ci.lock.pid", "12.5"),
        ("cc-ci.lock.pid", "99999999999"),
        ("cc-ci.lock.expires-ms", "soon"),
        ("cc-ci.lock.expires-ms", "-1"),
        ("cc-ci.lock.expires-ms", "2026-12-01T19:51:20.565Z"),
        ("cc-ci.lock.lease-ms", "30s"),
        ("cc-ci.lock.renewals", "many"),
    ];
    for (k, v) in cases {
        let mut labels = lease().labels();
        labels.insert(k.into(), v.into());
        assert_eq!(LeaseInfo::from_labels(&labels), None, "{k}={v:?}");
    }
}

#[test]
fn lease_expires_only_past_expiry_plus_margin() {
    let info = lease();
    let margin = Duration::from_secs(10);
    let edge = info.expires_ms + 10_000;
    assert!(!info.expired(info.expires_ms - 1, margin));
    assert!(!info.expired(info.expires_ms, margin));
    assert!(!info.expired(edge, margin), "exactly expiry + margin");
    assert!(info.expired(edge + 1, margin), "1 ms after expiry + margin");
}

#[test]
fn lease_expiry_does_not_overflow() {
    let info = LeaseInfo {
        expires_ms: u64::MAX - 5,
        ..lease()
    };
    assert!(!info.expired(u64::MAX, Duration::from_secs(10)));
}

#[test]
fn lease_owner_maps_the_holder() {
    let owner = lease().owner();
    assert_eq!(
        owner,
        OwnerRecord {
            run_id: "drone-77".into(),
            pid: 4242,
            host: "runner-2".into(),
            cwd: String::new(),
            started: "2026-12-01T19:50:50.565Z".into(),
            kind: Kind::App,
            role: Role::Run,
        }
    );
}

// ---------------------------------------------------------------------------
// parse_inspect

const INSPECT: &str = r#"[
    {
        "ID": "78c6kys7kr4fhrkyiv4t92pv4",
        "Version": {"Index": 14},
        "CreatedAt": "2026-12-01T19:50:50.565763194Z",
        "UpdatedAt": "2026-12-01T19:50:50.565763194Z",
        "Spec": {"Name": "ccci-lock.a.ci.localhost", "Labels": {"a": "b"}, "Data": "aGkK"}
    }
]"#;

#[test]
fn inspect_output_with_foreign_labels_parses_without_lease() {
    let objects = parse_inspect(INSPECT).unwrap();
    assert_eq!(objects.len(), 1);
    let o = &objects[0];
    assert_eq!(o.id, "78c6kys7kr4fhrkyiv4t92pv4");
    assert_eq!(o.name, "ccci-lock.a.ci.localhost");
    assert_eq!(o.version, 14);
    assert_eq!(o.labels, HashMap::from([("a".into(), "b".into())]));
    assert_eq!(o.lease, None);
}

#[test]
fn inspect_output_without_labels_parses() {
    for labels in ["", r#""Labels": null,"#, r#""Labels": {},"#] {
        let text = format!(
            r#"[{{"ID": "x1", "Version": {{"Index": 3}}, "Spec": {{{labels} "Name": "ccci-lock.b"}}}}]"#
        );
        let objects = parse_inspect(&text).unwrap_or_else(|e| panic!("{text}: {e:#}"));
        assert_eq!(objects.len(), 1, "{text}");
        assert_eq!(objects[0].name, "ccci-lock.b");
        assert_eq!(objects[0].version, 3);
        assert!(objects[0].labels.is_empty(), "{text}");
        assert_eq!(objects[0].lease, None);
    }
}

#[test]
fn inspect_output_with_lease_labels_gives_the_lease() {
    let info = lease();
    let labels = serde_json::to_string(&info.labels()).unwrap();
    let text = format!(
        r#"[{{"ID": "abc", "Version": {{"Index": 99}}, "CreatedAt": "2026-12-01T19:50:50Z",
            "Spec": {{"Name": "ccci-lock.app.ci.localhost", "Labels": {labels}, "Data": "e30="}}}},
           {{"ID": "def", "Version": {{"Index": 7}}, "Spec": {{"Name": "ccci-lock.other"}}}}]"#
    );
    let objects = parse_inspect(&text).unwrap();
    assert_eq!(objects.len(), 2);
    assert_eq!(objects[0].lease, Some(info));
    assert_eq!(objects[0].version, 99);
    assert_eq!(objects[1].id, "def");
    assert_eq!(objects[1].lease, None);
}

#[test]
fn inspect_of_nothing_is_empty() {
    assert!(parse_inspect("[]").unwrap().is_empty());
    assert!(parse_inspect("[]\n").unwrap().is_empty());
}

#[test]
fn garbage_inspect_output_is_an_error() {
    for text in [
        "",
        "not json",
        "Error: no such config: x",
        "{}",
        r#"[{"ID": "x"}]"#,
        r#"[{"ID": "x", "Version": {"Index": "14"}, "Spec": {"Name": "n"}}]"#,
        &INSPECT[..INSPECT.len() / 2],
    ] {
        let err = parse_inspect(text).expect_err(text);
        assert!(
            format!("{err:#}").contains("docker config inspect"),
            "{text:?}: {err:#}"
        );
    }
}

// ---------------------------------------------------------------------------
// LockSettings

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn settings(pairs: &[(&str, &str)]) -> LockSettings {
    cc_ci_run::config::locks::settings(&env(pairs), "runner-1")
        .unwrap_or_else(|e| panic!("{pairs:?} must be accepted: {e:#}"))
}

/// Asserts `pairs` is refused with exit 2 and a message naming `var`.
fn refused(pairs: &[(&str, &str)], var: &str) -> String {
    let err = cc_ci_run::config::locks::settings(&env(pairs), "runner-1")
        .expect_err(&format!("{pairs:?} must be refused"));
    let msg = format!("{err:#}");
    assert_eq!(exit::code_for(&err), exit::USAGE, "{pairs:?}: {msg}");
    assert!(msg.contains(var), "{pairs:?} names {var}: {msg}");
    msg
}

#[test]
fn lock_settings_defaults() {
    let s = settings(&[]);
    assert_eq!(s.backend, Backend::Flock);
    assert_eq!(s.host_id, "runner-1");
    assert_eq!(s.lease.lease, Duration::from_secs(30));
    assert_eq!(s.lease.renew_every, Duration::from_secs(10));
    assert_eq!(s.lease.margin, Duration::from_secs(10));
    assert_eq!(s.docker_host, None);
}

#[test]
fn empty_variables_count_as_unset() {
    let s = settings(&[
        ("CCCI_LOCK_BACKEND", ""),
        ("CCCI_HOST_ID", ""),
        ("CCCI_LOCK_LEASE", ""),
        ("CCCI_LOCK_RENEW", ""),
        ("CCCI_LOCK_MARGIN", ""),
        ("DOCKER_HOST", ""),
    ]);
    assert_eq!(s.backend, Backend::Flock);
    assert_eq!(s.host_id, "runner-1");
    assert_eq!(s.lease.lease, Duration::from_secs(30));
    assert_eq!(s.docker_host, None);
}

#[test]
fn lock_settings_from_variables() {
    let s = settings(&[
        ("CCCI_LOCK_BACKEND", "swarm"),
        ("CCCI_HOST_ID", "ci-host_2.example"),
        ("CCCI_LOCK_LEASE", "1m"),
        ("CCCI_LOCK_RENEW", "30s"),
        ("CCCI_LOCK_MARGIN", "1500ms"),
        ("DOCKER_HOST", "unix:///run/other.sock"),
    ]);
    assert_eq!(s.backend, Backend::Swarm);
    assert_eq!(s.backend.as_str(), "swarm");
    assert_eq!(s.host_id, "ci-host_2.example");
    assert_eq!(s.lease.lease, Duration::from_secs(60));
    assert_eq!(s.lease.renew_every, Duration::from_secs(30));
    assert_eq!(s.lease.margin, Duration::from_millis(1500));
    assert_eq!(s.docker_host.as_deref(), Some("unix:///run/other.sock"));
    assert_eq!(
        settings(&[("CCCI_LOCK_BACKEND", "flock")]).backend,
        Backend::Flock
    );
}

#[test]
fn renew_and_margin_default_to_a_third_of_the_lease() {
    let s = settings(&[("CCCI_LOCK_LEASE", "90")]);
    assert_eq!(s.lease.lease, Duration::from_secs(90));
    assert_eq!(s.lease.renew_every, Duration::from_secs(30));
    assert_eq!(s.lease.margin, Duration::from_secs(30));
}

#[test]
fn shortest_lease_and_half_lease_renewal_are_accepted() {
    let s = settings(&[("CCCI_LOCK_LEASE", "1s")]);
    assert_eq!(s.lease.lease, Duration::from_secs(1));
    let s = settings(&[("CCCI_LOCK_RENEW", "15s")]);
    assert_eq!(s.lease.renew_every, Duration::from_secs(15));
}

#[test]
fn bad_backend_is_refused() {
    for v in ["consul", "Swarm", "swarm ", "FLOCK", "etcd"] {
        refused(&[("CCCI_LOCK_BACKEND", v)], "CCCI_LOCK_BACKEND");
    }
}

#[test]
fn bad_host_id_is_refused() {
    let long = "h".repeat(64);
    for v in [
        "-x",
        "a b",
        "a/b",
        "_x",
        ".x",
        "a\nb",
        "héte",
        long.as_str(),
    ] {
        refused(&[("CCCI_HOST_ID", v)], "CCCI_HOST_ID");
        assert!(check_host_id(v).is_err(), "{v:?}");
    }
    check_host_id(&"h".repeat(63)).unwrap();
    check_host_id("a").unwrap();
}

#[test]
fn too_short_lease_is_refused() {
    for v in ["0", "500ms", "999ms", "0s"] {
        refused(&[("CCCI_LOCK_LEASE", v)], "CCCI_LOCK_LEASE");
    }
}

#[test]
fn renewal_over_half_the_lease_is_refused() {
    for (lease, renew) in [
        ("30s", "16s"),
        ("30s", "30s"),
        ("10s", "5001ms"),
        ("30s", "0"),
    ] {
        refused(
            &[("CCCI_LOCK_LEASE", lease), ("CCCI_LOCK_RENEW", renew)],
            "CCCI_LOCK_RENEW",
        );
    }
    refused(&[("CCCI_LOCK_RENEW", "1m")], "CCCI_LOCK_RENEW");
}

#[test]
fn zero_or_tiny_margin_is_refused() {
    for v in ["0", "0ms", "0s", "1ms", "199ms"] {
        refused(&[("CCCI_LOCK_MARGIN", v)], "CCCI_LOCK_MARGIN");
    }
}

#[test]
fn unparsable_durations_are_refused_naming_the_variable() {
    for var in ["CCCI_LOCK_LEASE", "CCCI_LOCK_RENEW", "CCCI_LOCK_MARGIN"] {
        for v in ["abc", "10x", "-5s", "1.5s", "s", "10 s s"] {
            let msg = refused(&[(var, v)], var);
            assert!(msg.contains("not a duration"), "{var}={v:?}: {msg}");
        }
    }
}

#[test]
fn odd_hostname_is_cleaned_into_a_valid_host_id() {
    let cases = [
        ("runner-1", "runner-1"),
        ("my host!", "my-host-"),
        ("-weird", "h-weird"),
        ("_under", "h_under"),
        ("", "h"),
        ("héllo", "h-llo"),
    ];
    for (hostname, want) in cases {
        let s = cc_ci_run::config::locks::settings(&env(&[]), hostname).unwrap();
        assert_eq!(s.host_id, want, "{hostname:?}");
    }
    for hostname in [
        "a".repeat(100),
        format!("-{}", "b".repeat(80)),
        "/\\\t\n".to_string(),
        ".".repeat(63),
        "ü".repeat(70),
    ] {
        let s = cc_ci_run::config::locks::settings(&env(&[]), &hostname).unwrap();
        check_host_id(&s.host_id).unwrap_or_else(|e| panic!("{hostname:?}: {e:#}"));
    }
}

#[test]
fn explicit_host_id_wins_over_hostname() {
    let s = cc_ci_run::config::locks::settings(&env(&[("CCCI_HOST_ID", "rack-7")]), "my host!")
        .unwrap();
    assert_eq!(s.host_id, "rack-7");
}

// ---------------------------------------------------------------------------
// timestamps

fn at_ms(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

#[test]
fn timestamps_are_rfc3339_utc_with_milliseconds() {
    assert_eq!(log::timestamp(at_ms(0)), "1970-01-01T00:00:00.000Z");
    assert_eq!(
        log::timestamp(at_ms(1_709_208_000_000)),
        "2024-02-29T12:00:00.000Z"
    );
    assert_eq!(
        log::timestamp(at_ms(1_798_761_599_999)),
        "2026-12-31T23:59:59.999Z"
    );
}

#[test]
fn timestamp_round_trips_to_the_millisecond() {
    let times = [
        SystemTime::UNIX_EPOCH,
        at_ms(1),
        at_ms(1_709_164_800_000), // 2024-02-29T00:00:00Z
        at_ms(1_709_251_199_999), // 2024-02-29T23:59:59.999Z
        at_ms(1_798_761_599_999), // 2026-12-31T23:59:59.999Z
        at_ms(1_798_761_600_000), // 2027-01-01T00:00:00Z
        at_ms(951_782_400_000),   // 2000-02-29T00:00:00Z
        at_ms(4_107_542_400_000), // 2100-03-01T00:00:00Z
    ];
    for t in times {
        let text = log::timestamp(t);
        assert_eq!(log::parse_timestamp(&text), Some(t), "{text}");
    }
    // Sub-millisecond parts are cut, not rounded.
    let t = at_ms(1_709_208_000_123) + Duration::from_nanos(999_999);
    let text = log::timestamp(t);
    assert_eq!(text, "2024-02-29T12:00:00.123Z");
    assert_eq!(log::parse_timestamp(&text), Some(at_ms(1_709_208_000_123)));
}

#[test]
fn timestamp_without_fraction_parses() {
    assert_eq!(
        log::parse_timestamp("2024-02-29T12:00:00Z"),
        Some(at_ms(1_709_208_000_000))
    );
    assert_eq!(
        log::parse_timestamp("2024-02-29T12:00:00.5Z"),
        Some(at_ms(1_709_208_000_500))
    );
}

#[test]
fn malformed_timestamps_give_none() {
    for text in [
        "",
        "Z",
        "garbage",
        "2024-02-29T12:00:00.000",
        "2024-02-29 12:00:00.000Z",
        "2024-02-29T12:00.000Z",
        "2024-02T12:00:00.000Z",
        "2024-13-01T00:00:00.000Z",
        "2024-00-01T00:00:00.000Z",
        "2024-01-00T00:00:00.000Z",
        "2024-01-32T00:00:00.000Z",
        "2024-02-29T24:00:00.000Z",
        "2024-02-29T12:60:00.000Z",
        "2024-02-29T12:00:61.000Z",
        "2024-02-29T12:00:00.Z",
        "2024-02-29T12:00:00.abcZ",
        "2024-02-29T12:00:00.1x3Z",
        "1969-12-31T23:59:59.000Z",
        "yyyy-02-29T12:00:00.000Z",
    ] {
        assert_eq!(log::parse_timestamp(text), None, "{text:?}");
    }
}

// ---------------------------------------------------------------------------
// swarm_reports / swarm_table

const NOW_MS: u64 = 1_796_154_650_000;
const MARGIN: Duration = Duration::from_secs(10);
const MAX_AGE: Duration = Duration::from_secs(2 * 3600);

fn object(name: &str, lease: Option<LeaseInfo>) -> LockObject {
    LockObject {
        id: format!("id-{name}"),
        name: object_name(name),
        version: 5,
        labels: lease.as_ref().map(LeaseInfo::labels).unwrap_or_default(),
        lease,
        updated_ms: Some(NOW_MS),
    }
}

/// A lease of `domain` started `age_s` ago that expires in `expires_in_ms`.
fn lease_of(domain: &str, age_s: u64, expires_in_ms: i64) -> LeaseInfo {
    LeaseInfo {
        domain: domain.into(),
        started: log::timestamp(at_ms(NOW_MS - age_s * 1000)),
        expires_ms: (NOW_MS as i64 + expires_in_ms) as u64,
        ..lease()
    }
}

fn reports(objects: &[LockObject]) -> Vec<SwarmLockReport> {
    swarm_reports(objects, MARGIN, MAX_AGE, at_ms(NOW_MS))
}

#[test]
fn live_lease_is_held() {
    let r = reports(&[object("a.ci", Some(lease_of("a.ci", 60, 20_000)))]);
    let r = &r[0];
    assert_eq!(r.state, "held");
    assert_eq!(r.domain, "a.ci");
    assert_eq!(r.object, "ccci-lock.a.ci");
    assert_eq!(r.id, "id-a.ci");
    assert_eq!(r.version, 5);
    assert_eq!(r.host.as_deref(), Some("runner-2"));
    assert_eq!(r.run_id.as_deref(), Some("drone-77"));
    assert_eq!(r.pid, Some(4242));
    assert_eq!(r.renewals, Some(3));
    assert_eq!(r.expires_in_secs, Some(20));
    assert_eq!(
        r.expires.as_deref(),
        Some(log::timestamp(at_ms(NOW_MS + 20_000)).as_str())
    );
    assert_eq!(r.age_secs, Some(60));
    assert!(!r.over_max_age);
}

#[test]
fn lease_past_expiry_but_within_margin_is_still_held() {
    let r = reports(&[
        object("a.ci", Some(lease_of("a.ci", 60, -5_000))),
        object("b.ci", Some(lease_of("b.ci", 60, -10_000))),
    ]);
    assert_eq!(r[0].state, "held");
    assert_eq!(r[0].expires_in_secs, Some(-5), "negative once past expiry");
    assert_eq!(r[1].state, "held", "exactly expiry + margin");
}

#[test]
fn lease_past_expiry_and_margin_is_expired() {
    let r = reports(&[
        object("a.ci", Some(lease_of("a.ci", 60, -10_001))),
        object("b.ci", Some(lease_of("b.ci", 60, -90_000))),
    ]);
    assert_eq!(r[0].state, "expired");
    // Rounded down: 10.001 s ago shows as 11 s ago, never as `in 0s`.
    assert_eq!(r[0].expires_in_secs, Some(-11));
    assert_eq!(r[1].state, "expired");
    assert_eq!(r[1].expires_in_secs, Some(-90));
}

#[test]
fn object_without_lease_labels_is_unknown_under_its_name() {
    let r = reports(&[object("planted.ci", None)]);
    let r = &r[0];
    assert_eq!(r.state, "unknown");
    assert_eq!(r.domain, "ccci-lock.planted.ci");
    assert_eq!(r.host, None);
    assert_eq!(r.run_id, None);
    assert_eq!(r.pid, None);
    assert_eq!(r.started, None);
    assert_eq!(r.expires, None);
    assert_eq!(r.expires_in_secs, None);
    assert_eq!(r.renewals, None);
    assert_eq!(r.age_secs, None);
    assert!(!r.over_max_age);
}

#[test]
fn only_a_held_lease_is_over_max_age() {
    let three_hours = 3 * 3600;
    let r = reports(&[
        object("old.ci", Some(lease_of("old.ci", three_hours, 20_000))),
        object("dead.ci", Some(lease_of("dead.ci", three_hours, -60_000))),
        object("edge.ci", Some(lease_of("edge.ci", 2 * 3600, 20_000))),
    ]);
    assert!(r[0].over_max_age);
    assert_eq!(r[0].age_secs, Some(three_hours));
    assert_eq!(r[1].state, "expired");
    assert!(!r[1].over_max_age, "an expired lease is not held");
    assert!(!r[2].over_max_age, "exactly the max age is not over it");
}

#[test]
fn unparsable_started_has_no_age() {
    let mut l = lease_of("a.ci", 0, 20_000);
    l.started = "yesterday".into();
    let r = reports(&[object("a.ci", Some(l))]);
    assert_eq!(r[0].age_secs, None);
    assert!(!r[0].over_max_age);
}

#[test]
fn swarm_table_names_every_domain_and_state() {
    let r = reports(&[
        object("held.ci", Some(lease_of("held.ci", 3 * 3600, 20_000))),
        object("gone.ci", Some(lease_of("gone.ci", 60, -30_000))),
        object("planted.ci", None),
    ]);
    let table = swarm_table(&r);
    assert!(table.starts_with("DOMAIN"), "{table}");
    assert_eq!(table.lines().count(), 4, "{table}");
    for needle in [
        "held.ci",
        "gone.ci",
        "ccci-lock.planted.ci",
        "held",
        "expired",
        "unknown",
        "in 20s",
        "30s ago",
        "run drone-77 (pid 4242 on host runner-2",
        "3 renewal(s)",
        "not a cc-ci-run lease",
        "[held longer than CCCI_LOCK_MAX_AGE]",
    ] {
        assert!(table.contains(needle), "{needle:?} in\n{table}");
    }
    let over: Vec<&str> = table
        .lines()
        .filter(|l| l.contains("CCCI_LOCK_MAX_AGE"))
        .collect();
    assert_eq!(over.len(), 1, "{table}");
    assert!(over[0].starts_with("held.ci"), "{table}");
}

#[test]
fn empty_swarm_table_says_no_swarm_locks() {
    assert_eq!(swarm_table(&[]), "no swarm locks\n");
}

#[test]
fn parse_timestamp_refuses_impossible_dates_signs_short_fields_and_junk() {
    for bad in [
        "2024-02-30T00:00:00Z",
        "2023-02-29T00:00:00Z",
        "2024-04-31T00:00:00Z",
        "2024-02-29T12:00:00.123garbageZ",
        "+2024-02-29T12:00:00Z",
        "2024-+2-29T12:00:00Z",
        "2024-02-29T1:2:3Z",
        "2024-02-29T12:00:60Z",
        "2024-02-29T12:00:00.Z",
    ] {
        assert_eq!(log::parse_timestamp(bad), None, "{bad}");
    }
    assert!(log::parse_timestamp("2000-02-29T00:00:00Z").is_some());
    assert!(log::parse_timestamp("2024-02-29T12:00:00.123456789Z").is_some());
}

#[test]
fn labels_without_the_app_kind_are_not_a_lease() {
    let info = lease();
    let mut labels = info.labels();
    labels.insert("cc-ci.lock".into(), "run".into());
    assert_eq!(LeaseInfo::from_labels(&labels), None);
    labels.remove("cc-ci.lock");
    assert_eq!(LeaseInfo::from_labels(&labels), None);
}

#[test]
fn lease_without_a_margin_label_reads_as_margin_zero() {
    let mut labels = lease().labels();
    assert_eq!(labels["cc-ci.lock.margin-ms"], "10000");
    labels.remove("cc-ci.lock.margin-ms");
    let read = LeaseInfo::from_labels(&labels).unwrap();
    assert_eq!(read.margin_ms, 0);
    labels.insert("cc-ci.lock.margin-ms".into(), "soon".into());
    assert_eq!(LeaseInfo::from_labels(&labels), None);
}

// ---------------------------------------------------------------------------
// Not-found in every form is a lost race; already-exists is busy.

#[test]
fn every_not_found_form_the_engine_uses_is_a_lost_race() {
    let forms = [
        // docker CLI, config inspect / rm by ID of a removed object
        "Error: No such config: 4x1b0e5gqkq7tnxnc3ou2i7z2",
        "Error response from daemon: config 4x1b0e5gqkq7tnxnc3ou2i7z2 not found",
        // swarmkit through the daemon (the race issue 19 saw)
        "Error response from daemon: rpc error: code = NotFound desc = could not find config 4x1b0e5gqkq7tnxnc3ou2i7z2",
        "rpc error: code = NotFound desc = config x not found",
        // the API's status, as bollard and curl show it
        "Docker responded with status code 404: config x not found",
        "HTTP/1.1 404 Not Found",
        "Error: no such object: x",
    ];
    for f in forms {
        assert_eq!(classify_refusal(f), Refusal::NotFound, "{f}");
    }
}

#[test]
fn already_exists_forms_are_busy_and_other_failures_are_errors() {
    for f in [
        "Error response from daemon: rpc error: code = AlreadyExists desc = config ccci-lock.a name conflicts with an existing object",
        "config ccci-lock.a already exists",
    ] {
        assert_eq!(classify_refusal(f), Refusal::Exists, "{f}");
    }
    for f in [
        "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?",
        "Error response from daemon: This node is not a swarm manager.",
        "Error response from daemon: rpc error: code = Unavailable desc = all SubConns are in TransientFailure",
        "",
    ] {
        assert_eq!(classify_refusal(f), Refusal::Other, "{f}");
    }
}

// ---------------------------------------------------------------------------
// Take-over by the engine's clock; lease and margin from the labels.

fn own(lease_s: u64, renew_s: u64, margin_s: u64) -> Lease {
    Lease {
        lease: Duration::from_secs(lease_s),
        renew_every: Duration::from_secs(renew_s),
        margin: Duration::from_secs(margin_s),
    }
}

#[test]
fn takeover_is_due_only_past_updated_at_plus_lease_plus_margin_by_the_engine_clock() {
    // lease 30 s and margin 10 s in the labels and our own settings
    let o = object("app.ci.localhost", Some(lease()));
    let upd = NOW_MS;
    let mine = own(30, 10, 10);
    assert_eq!(
        o.takeover_in(upd, &mine),
        Some(Duration::from_millis(40_001))
    );
    assert_eq!(
        o.takeover_in(upd + 40_000, &mine),
        Some(Duration::from_millis(1))
    );
    assert_eq!(o.takeover_in(upd + 40_001, &mine), Some(Duration::ZERO));
    // The labels' expiry (the holder's own clock) plays no part.
    let skewed = LeaseInfo {
        expires_ms: 0,
        ..lease()
    };
    let o2 = object("app.ci.localhost", Some(skewed));
    assert_eq!(
        o2.takeover_in(upd + 39_000, &mine),
        Some(Duration::from_millis(1_001))
    );
}

#[test]
fn a_taker_uses_the_larger_lease_and_margin_of_its_own_and_the_holders() {
    let o = object("app.ci.localhost", Some(lease())); // 30 s + 10 s
                                                       // A taker configured short (1 s lease, 200 ms margin) still waits 40 s.
    let short = Lease {
        lease: Duration::from_secs(1),
        renew_every: Duration::from_millis(500),
        margin: Duration::from_millis(200),
    };
    assert_eq!(
        o.takeover_in(NOW_MS + 40_000, &short),
        Some(Duration::from_millis(1))
    );
    // A taker configured longer waits its own.
    assert_eq!(
        o.takeover_in(NOW_MS + 40_001, &own(60, 20, 20)),
        Some(Duration::from_millis(40_000))
    );
    // A holder's object from before the margin label: the taker's margin.
    let old = LeaseInfo {
        margin_ms: 0,
        ..lease()
    };
    let o3 = object("app.ci.localhost", Some(old));
    assert_eq!(
        o3.takeover_in(NOW_MS + 35_001, &own(30, 10, 5)),
        Some(Duration::ZERO)
    );
}

#[test]
fn no_takeover_without_a_lease_or_an_updated_at() {
    let mine = own(30, 10, 10);
    assert_eq!(object("a.b", None).takeover_in(u64::MAX, &mine), None);
    let mut o = object("a.b", Some(lease()));
    o.updated_ms = None;
    assert_eq!(o.takeover_in(u64::MAX, &mine), None);
    o.updated_ms = Some(u64::MAX - 3);
    assert_eq!(
        o.takeover_in(u64::MAX, &mine),
        Some(Duration::from_millis(1))
    );
}

#[test]
fn inspect_output_gives_the_engine_updated_at() {
    let text = r#"[{"ID":"izajjok33w43fwkcd94x45lc6","Version":{"Index":173},"CreatedAt":"2026-12-06T04:48:35.963516275Z","UpdatedAt":"2026-12-06T04:48:36.5Z","Spec":{"Name":"x-probe","Labels":{},"Data":"Cg=="}}]"#;
    let o = parse_inspect(text).unwrap().remove(0);
    let want = log::parse_timestamp("2026-12-06T04:48:36.500Z").unwrap();
    assert_eq!(o.updated_ms, Some(cc_ci_run::lock::swarm::unix_ms(want)));
}

// ---------------------------------------------------------------------------
// Clock skew against the engine

#[test]
fn skew_is_the_least_offset_that_explains_the_engine_stamp() {
    assert_eq!(skew_ms(1_000, 900, 1_100), 0, "within the round trip");
    assert_eq!(skew_ms(1_000, 61_000, 61_050), 60_000, "host 60 s ahead");
    assert_eq!(skew_ms(61_050, 1_000, 1_050), -60_000, "host 60 s behind");
}

#[test]
fn skew_within_half_the_margin_is_fine_past_it_warns_past_the_margin_refuses() {
    let m = Duration::from_secs(10);
    assert_eq!(judge_skew(0, m), None);
    assert_eq!(judge_skew(5_000, m), None);
    assert_eq!(judge_skew(-5_000, m), None);
    let (refuse, text) = judge_skew(5_001, m).unwrap();
    assert!(!refuse);
    assert!(text.contains("5.001s ahead of"), "{text}");
    let (refuse, text) = judge_skew(-10_000, m).unwrap();
    assert!(!refuse);
    assert!(text.contains("10.000s behind"), "{text}");
    let (refuse, text) = judge_skew(60_000, m).unwrap();
    assert!(refuse);
    assert!(
        text.contains("60.000s ahead of") && text.contains("CCCI_LOCK_MARGIN"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------
// Bounds derived from the lease

#[test]
fn call_bounds_sit_well_below_lease_minus_renew_and_the_renewal_bound_below_the_margin() {
    for (lease, renew, margin) in [
        (30_000u64, 10_000u64, 10_000u64),
        (10_000, 5_000, 2_000),
        (1_000, 500, 200),
        (2_000, 1_000, 500),
    ] {
        let l = Lease {
            lease: Duration::from_millis(lease),
            renew_every: Duration::from_millis(renew),
            margin: Duration::from_millis(margin),
        };
        let gap = Duration::from_millis(lease - renew);
        assert!(l.call_bound() * 2 <= gap, "{l:?}");
        assert!(l.renew_bound() <= l.call_bound(), "{l:?}");
        assert!(l.renew_bound() * 2 <= l.margin, "{l:?}");
        assert_eq!(l.safety(), l.call_bound());
    }
}
