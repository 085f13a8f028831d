//! Per-recipe settings (SPEC section 3b): every key typed and validated,
//! errors naming file, line, key and rule; the CI file wins key by key.

use std::path::Path;
use std::time::Duration;

use cc_ci_run::config::Base;
use cc_ci_run::exit::code_for;
use cc_ci_run::settings::{self, Probe};

fn err(text: &str) -> (i32, String) {
    let e = settings::parse(Path::new("/ci/tests/app/ccci.toml"), text).expect_err(text);
    (code_for(&e), format!("{e:#}"))
}

#[test]
fn settings_every_key_is_typed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("compose.ci.yml"), "services: {}\n").unwrap();
    let file = dir.path().join("ccci.toml");
    let text = r#"
converge_timeout = "15m"
base = "1.2.0+2.0"
ready_probe = "http /healthz 200 204"
ready_timeout = 120
floor = false
overlays = ["compose.ci.yml"]

[env]
SANDBOX_DOMAIN = "sandbox.example.org"

[upgrade_env]
NEW_VAR = "a b # c"

[not_applicable]
backup = "the recipe keeps no data"
"#;
    let s = settings::parse(&file, text).unwrap();
    assert_eq!(
        s.converge_timeout.as_ref().unwrap().value,
        Duration::from_secs(900)
    );
    assert_eq!(s.converge_timeout.as_ref().unwrap().from.line, 2);
    assert_eq!(s.base.unwrap().value, Base::Version("1.2.0+2.0".into()));
    assert_eq!(
        s.ready_probe.unwrap().value,
        Probe::Http {
            path: "/healthz".into(),
            statuses: vec![200, 204]
        }
    );
    assert_eq!(s.ready_timeout.unwrap().value, Duration::from_secs(120));
    assert!(!s.floor.unwrap().value);
    assert_eq!(
        s.overlays.unwrap().value,
        vec![dir.path().join("compose.ci.yml")]
    );
    let env = s.env.unwrap();
    assert_eq!(
        env.value,
        vec![(
            "SANDBOX_DOMAIN".to_string(),
            "sandbox.example.org".to_string()
        )]
    );
    assert_eq!(env.from.line, 9, "the line of the [env] header");
    assert_eq!(s.upgrade_env.unwrap().value[0].1, "a b # c");
    let na = s.not_applicable.unwrap().value;
    assert_eq!(
        na,
        vec![("backup".to_string(), "the recipe keeps no data".to_string())]
    );
    assert_eq!(
        settings::parse_probe("tcp 8080").unwrap(),
        Probe::Tcp { port: 8080 }
    );
}

#[test]
fn settings_unknown_key_names_file_line_and_closest() {
    let (code, msg) = err("floor = true\n\nconverge_timout = 900\n");
    assert_eq!(code, 2, "{msg}");
    assert!(msg.contains("/ci/tests/app/ccci.toml:3"), "{msg}");
    assert!(msg.contains("\"converge_timout\""), "{msg}");
    assert!(msg.contains("did you mean \"converge_timeout\""), "{msg}");
    let (_, msg) = err("[not_applicable]\nupgade = \"x\"\n");
    assert!(
        msg.contains(":2:") && msg.contains("did you mean \"upgrade\""),
        "{msg}"
    );
    let (_, msg) = err("[not_applicable]\ninstall = \"x\"\n");
    assert!(msg.contains("unknown tier"), "{msg}");
}

#[test]
fn settings_bad_values_name_key_and_rule() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "converge_timeout = true\n",
            "key converge_timeout",
            "positive duration",
        ),
        (
            "converge_timeout = 0\n",
            "key converge_timeout",
            "positive duration",
        ),
        (
            "converge_timeout = \"5w\"\n",
            "key converge_timeout",
            "positive duration",
        ),
        (
            "converge_timeout = -5\n",
            "key converge_timeout",
            "positive duration",
        ),
        ("\n\nbase = \"../x\"\n", ":3: key base", "release tag"),
        ("base = 3\n", "key base", "must be a string"),
        ("floor = \"off\"\n", "key floor", "true or false"),
        (
            "ready_probe = \"http healthz\"\n",
            "key ready_probe",
            "PATH starting with '/'",
        ),
        (
            "ready_probe = \"http /x 999\"\n",
            "key ready_probe",
            "\"999\" is not a status",
        ),
        (
            "ready_probe = \"tcp 70000\"\n",
            "key ready_probe",
            "not a port",
        ),
        ("ready_probe = \"udp 53\"\n", "key ready_probe", "tcp PORT"),
        ("env = \"A=b\"\n", "key env", "table of variables"),
        ("[env]\n\"1X\" = \"b\"\n", ":2: key env.1X", "variable name"),
        (
            "[env]\nX = 1\n",
            "key env.X",
            "must be a string, not an integer",
        ),
        (
            "[upgrade_env]\nX = \"it's\"\n",
            "key upgrade_env.X",
            "single quotes",
        ),
        ("[env]\nX = \"a\\nb\"\n", "key env.X", "one line"),
        (
            "not_applicable = [\"backup\"]\n",
            "key not_applicable",
            "table of tiers",
        ),
        (
            "[not_applicable]\nbackup = \"  \"\n",
            "key not_applicable.backup",
            "non-empty",
        ),
        ("overlays = \"compose.ci.yml\"\n", "key overlays", "array"),
        (
            "overlays = [\"../compose.yml\"]\n",
            "key overlays",
            "relative path",
        ),
        (
            "overlays = [\"/etc/compose.yml\"]\n",
            "key overlays",
            "relative path",
        ),
        ("overlays = [\"compose.ci.txt\"]\n", "key overlays", ".yml"),
        (
            "overlays = [\"missing.yml\"]\n",
            "key overlays",
            "does not exist",
        ),
        ("floor = \n", ":1:", "not valid TOML"),
    ];
    for (text, at, rule) in cases {
        let (code, msg) = err(text);
        assert_eq!(code, 2, "{text:?}: {msg}");
        assert!(msg.contains("/ci/tests/app/ccci.toml:"), "{text:?}: {msg}");
        assert!(msg.contains(at), "{text:?}: {msg} (expected {at:?})");
        assert!(msg.contains(rule), "{text:?}: {msg} (expected {rule:?})");
    }
}

#[test]
fn settings_ci_file_wins_key_by_key() {
    let root = tempfile::tempdir().unwrap();
    let ci = root.path().join("ci");
    std::fs::create_dir_all(ci.join("app")).unwrap();
    std::fs::write(
        ci.join("app/ccci.toml"),
        "converge_timeout = 60\n[env]\nA = \"ci\"\n",
    )
    .unwrap();
    let own = root.path().join("recipe-ccci.toml");
    std::fs::write(
        &own,
        "converge_timeout = 900\nfloor = false\n[env]\nB = \"recipe\"\n",
    )
    .unwrap();
    let s = settings::effective(&ci, "app", Some(&own)).unwrap();
    assert_eq!(
        s.converge_timeout.as_ref().unwrap().value,
        Duration::from_secs(60)
    );
    assert_eq!(
        s.converge_timeout.as_ref().unwrap().from.file,
        ci.join("app/ccci.toml")
    );
    let floor = s.floor.as_ref().unwrap();
    assert!(!floor.value);
    assert_eq!(floor.from.file, own);
    assert_eq!(
        s.env.as_ref().unwrap().value,
        vec![("A".to_string(), "ci".to_string())]
    );
    let lines = s.lines().join("\n");
    assert!(
        lines.contains(&format!(
            "converge_timeout = 1m00s  # from {}:1",
            ci.join("app/ccci.toml").display()
        )),
        "{lines}"
    );
    assert!(
        lines.contains(&format!("floor = false  # from {}:2", own.display())),
        "{lines}"
    );
    assert!(
        lines.contains("base = unset (--base, else latest-release)  # from default"),
        "{lines}"
    );
    // Neither file: every key at its default.
    let none = settings::effective(&root.path().join("nowhere"), "app", None).unwrap();
    assert_eq!(none, settings::Settings::default());
}
