//! The env-file table (tests/data/envfile_cases.json) against cc-ci-run's
//! reader. Each case's expected values are godotenv's (the reader abra
//! uses), and the case cites the rule; the concurrency target runs the same
//! table against the stand-in abra's reader.

use cc_ci_run::ext::abra::envfile;
use serde_json::Value;
use std::collections::BTreeMap;

fn cases() -> Vec<Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/envfile_cases.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn map(v: &Value) -> BTreeMap<String, String> {
    serde_json::from_value(v.clone()).unwrap()
}

#[test]
fn the_env_file_table_has_at_least_30_cases_each_citing_its_rule() {
    let c = cases();
    assert!(c.len() >= 30, "{}", c.len());
    for case in &c {
        assert!(!case["rule"].as_str().unwrap_or("").is_empty(), "{case}");
    }
}

#[test]
fn env_files_read_as_godotenv_reads_them() {
    let mut failed = Vec::new();
    for case in cases() {
        let name = case["name"].as_str().unwrap();
        let got = envfile::parse(case["text"].as_str().unwrap());
        match (&got, case.get("error")) {
            (Err(e), Some(want)) if e.to_string().contains(want.as_str().unwrap()) => {}
            (Ok(f), None) => {
                if f.vars != map(&case["vars"]) {
                    failed.push(format!("{name}: got {:?}, want {}", f.vars, case["vars"]));
                }
                let want_mods: BTreeMap<String, BTreeMap<String, String>> = case
                    .get("modifiers")
                    .map(|m| serde_json::from_value(m.clone()).unwrap())
                    .unwrap_or_default();
                if case.get("modifiers").is_some() && f.modifiers != want_mods {
                    failed.push(format!(
                        "{name}: modifiers {:?}, want {want_mods:?}",
                        f.modifiers
                    ));
                }
            }
            _ => failed.push(format!("{name}: got {got:?}, want {case}")),
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn modifiers_are_read_per_key() {
    let f =
        envfile::parse("SECRET_A_VERSION=v1 # length=32\nSECRET_B_VERSION=v1 # generate=false\n")
            .unwrap();
    assert_eq!(f.modifier("SECRET_A_VERSION", "length"), Some("32"));
    assert_eq!(f.modifier("SECRET_B_VERSION", "generate"), Some("false"));
    assert_eq!(f.modifier("SECRET_A_VERSION", "generate"), None);
}
