//! What the floor asks (SPEC section 3 step 9), from the app URL and the
//! recipe's ready probe; and the `CCCI_FLOOR` input.

use cc_ci_run::config::{floor, Env};
use cc_ci_run::run::floor::{target, Target};
use cc_ci_run::settings::Probe;

#[test]
fn without_a_probe_the_floor_asks_the_app_url_itself() {
    assert_eq!(
        target("https://app.ci.localhost/", None),
        Target::Http {
            url: "https://app.ci.localhost/".into(),
            statuses: vec![],
        }
    );
}

#[test]
fn an_http_probe_goes_to_the_url_origin_with_its_path_and_statuses() {
    let probe = Probe::Http {
        path: "/health".into(),
        statuses: vec![200, 401],
    };
    for (url, want) in [
        (
            "https://app.ci.localhost/",
            "https://app.ci.localhost/health",
        ),
        (
            "http://127.0.0.1:8080/app/x?q=1",
            "http://127.0.0.1:8080/health",
        ),
        ("https://[::1]:8443", "https://[::1]:8443/health"),
    ] {
        assert_eq!(
            target(url, Some(&probe)),
            Target::Http {
                url: want.into(),
                statuses: vec![200, 401],
            },
            "{url}"
        );
    }
}

#[test]
fn a_tcp_probe_goes_to_the_url_host_at_its_port() {
    let probe = Probe::Tcp { port: 5432 };
    for (url, host) in [
        ("https://app.ci.localhost/", "app.ci.localhost"),
        ("http://127.0.0.1:8080/app/", "127.0.0.1"),
        ("http://user@db.example.test:1/", "db.example.test"),
        ("https://[::1]:8443/", "::1"),
    ] {
        assert_eq!(
            target(url, Some(&probe)),
            Target::Tcp {
                host: host.into(),
                port: 5432,
            },
            "{url}"
        );
    }
}

#[test]
fn ccci_floor_is_on_off_or_unset_and_anything_else_is_a_usage_error() {
    let env = |v: &str| -> Env { [("CCCI_FLOOR".to_string(), v.to_string())].into() };
    assert_eq!(floor(&Env::new()).unwrap(), None);
    assert_eq!(floor(&env("")).unwrap(), None);
    for v in ["on", "1", "true", "yes", "ON"] {
        assert_eq!(floor(&env(v)).unwrap(), Some(true), "{v}");
    }
    for v in ["off", "0", "false", "no"] {
        assert_eq!(floor(&env(v)).unwrap(), Some(false), "{v}");
    }
    let e = floor(&env("maybe")).unwrap_err();
    assert_eq!(cc_ci_run::exit::code_for(&e), 2);
    assert!(format!("{e:#}").contains("CCCI_FLOOR"), "{e:#}");
}
