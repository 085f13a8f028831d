//! A strict reader of the runner's junit.xml, shared by the unit and the
//! concurrency tests: it fails on anything that is not well-formed XML
//! (mismatched tags, unknown entities, raw control characters), and returns
//! each testcase as (name, kind, message) where kind is `passed`,
//! `failure` or `skipped`.

#![allow(dead_code)]

use quick_xml::events::{BytesStart, Event};

fn attrs(e: &BytesStart) -> Vec<(String, String)> {
    e.attributes()
        .map(|a| {
            let a = a.expect("well-formed attribute");
            let v = a
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .expect("attribute with known entities only");
            (
                String::from_utf8_lossy(a.key.as_ref()).into_owned(),
                v.into_owned(),
            )
        })
        .collect()
}

fn get(a: &[(String, String)], k: &str) -> String {
    a.iter()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

pub fn parse_junit(xml: &str) -> Vec<(String, String, String)> {
    for c in xml.chars() {
        assert!(
            (c as u32) >= 0x20 || matches!(c, '\t' | '\n' | '\r'),
            "raw control character {c:?} in XML"
        );
    }
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut cases: Vec<(String, String, String)> = Vec::new();
    let mut saw_root = false;
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Start(e) | Event::Empty(e) => {
                let a = attrs(&e);
                match e.name().as_ref() {
                    b"testsuites" => saw_root = true,
                    b"testcase" => cases.push((get(&a, "name"), "passed".into(), String::new())),
                    b"failure" | b"skipped" => {
                        let last = cases.last_mut().expect("failure/skipped inside a testcase");
                        last.1 = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                        last.2 = get(&a, "message");
                    }
                    _ => {}
                }
            }
            Event::GeneralRef(r) => {
                let name = String::from_utf8_lossy(&r).into_owned();
                assert!(
                    ["lt", "gt", "amp", "quot", "apos"].contains(&name.as_str())
                        || name.starts_with('#'),
                    "unknown entity &{name};"
                );
            }
            Event::Eof => break,
            _ => {}
        }
    }
    assert!(saw_root, "no <testsuites> root");
    cases
}
