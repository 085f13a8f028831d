//! The Engine API client's pure parts: where DOCKER_HOST points, the
//! version asked in, the filters' encoding, the chunked decoder.

use cc_ci_run::ext::docker::api::{encode, filters, negotiate, Dechunk, Engine};

#[test]
fn docker_host_forms() {
    let host = |h: Option<&str>| Engine::from_host(h).map(|e| e.host());
    assert_eq!(host(None).unwrap(), "unix:///var/run/docker.sock");
    assert_eq!(host(Some("")).unwrap(), "unix:///var/run/docker.sock");
    assert_eq!(
        host(Some("unix:///run/user/1000/docker.sock")).unwrap(),
        "unix:///run/user/1000/docker.sock"
    );
    assert_eq!(
        host(Some("tcp://127.0.0.1:2375")).unwrap(),
        "tcp://127.0.0.1:2375"
    );
    // docker's client takes the plain port's default when none is given.
    assert_eq!(
        host(Some("tcp://127.0.0.1")).unwrap(),
        "tcp://127.0.0.1:2375"
    );
    for bad in [
        "ssh://ci@host",
        "unix://",
        "npipe:////./pipe/docker_engine",
        "tcp://h/x",
        "/var/run/docker.sock",
    ] {
        let e = format!("{:#}", host(Some(bad)).unwrap_err());
        assert!(e.contains("DOCKER_HOST"), "{bad}: {e}");
    }
}

#[test]
fn the_version_asked_is_the_lower_of_the_engines_and_ours() {
    assert_eq!(negotiate(Some("1.41")), "1.41");
    assert_eq!(negotiate(Some("1.47")), "1.47");
    // Docker 29 speaks 1.52 and refuses below 1.44: ours, which it serves.
    assert_eq!(negotiate(Some("1.52")), "1.47");
    assert_eq!(negotiate(Some("2.0")), "1.47");
    // An engine that does not say: docker's client assumes 1.24.
    assert_eq!(negotiate(None), "1.24");
    assert_eq!(negotiate(Some("garbage")), "1.24");
}

fn decode(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn filters_are_a_json_map_of_lists_percent_encoded() {
    let q = filters(&[
        ("label", "com.docker.stack.namespace=ex_ci"),
        ("type", "service"),
        ("type", "container"),
    ]);
    let json = q.strip_prefix("filters=").unwrap();
    assert!(!json.contains(['{', '"', '=', ' ', '&']), "{json}");
    let v: serde_json::Value = serde_json::from_str(&decode(json)).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"label": ["com.docker.stack.namespace=ex_ci"], "type": ["service", "container"]})
    );
    assert_eq!(encode("a b/c:d@e~f_g-h.i"), "a%20b%2Fc%3Ad%40e~f_g-h.i");
}

#[test]
fn chunked_bodies_decode_whatever_the_pieces() {
    let wire =
        b"4\r\nWiki\r\n5;name=value\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nTrailer: x\r\n\r\n";
    // Whole, and one byte at a time: the stream hands over what came.
    for step in [wire.len(), 1, 3, 7] {
        let mut d = Dechunk::default();
        let mut out = Vec::new();
        for piece in wire.chunks(step) {
            d.feed(piece, &mut out).unwrap();
        }
        assert!(d.done(), "step {step}");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Wikipedia in\r\n\r\nchunks."
        );
    }
    let mut d = Dechunk::default();
    let mut out = Vec::new();
    d.feed(b"5\r\nab", &mut out).unwrap();
    assert!(!d.done());
    assert_eq!(out, b"ab");
    assert!(Dechunk::default().feed(b"zz\r\n", &mut Vec::new()).is_err());
    // A chunk longer than its size line said.
    assert!(Dechunk::default()
        .feed(b"2\r\nabc\r\n", &mut Vec::new())
        .is_err());
}
