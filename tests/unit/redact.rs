//! The redactor's pure parts: the set and its escaped forms, the streamed
//! carry across chunks, CCCI_REDACT's syntax and checks, and reading the
//! secrets table `abra app new -S` prints.

use cc_ci_run::config::Env;
use cc_ci_run::redact::{self, Carry, Item, Secrets};

const S: &str = "s3cr3t-Value-0123";

fn set(values: &[&str]) -> Secrets {
    let mut s = Secrets::new();
    s.add(values.iter().copied());
    s
}

#[test]
fn a_value_is_hidden_wherever_it_is_and_a_short_one_is_not() {
    let s = set(&[S, "short7!"]);
    assert_eq!(s.len(), 1, "under 8 characters is not added");
    assert_eq!(s.redact(&format!("a {S} b {S}")), "a *** b ***");
    assert_eq!(s.redact("short7! stays"), "short7! stays");
    assert_eq!(s.redact("nothing here"), "nothing here");
    // Eight characters exactly is hidden (characters, not bytes).
    let s = set(&["ééééééé", "12345678"]);
    assert_eq!(s.len(), 1);
    assert_eq!(s.redact("x12345678y"), "x***y");
}

#[test]
fn the_longest_of_overlapping_values_is_hidden_whole() {
    let s = set(&["abcdefgh", "abcdefghijkl"]);
    assert_eq!(s.redact("-abcdefghijkl-"), "-***-");
}

#[test]
fn escaped_forms_in_json_and_xml_are_hidden() {
    let v = r#"pa"ss&<wo'rd>\x"#;
    let s = set(&[v]);
    let json = serde_json::to_string(&serde_json::json!({ "error": format!("bad {v}") })).unwrap();
    assert!(!s.redact(&json).contains("pa\\\"ss"), "{json}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&s.redact(&json)).unwrap()["error"],
        "bad ***",
        "the record stays valid JSON"
    );
    let xml_text = v
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    assert_eq!(s.redact(&format!("<f>{xml_text}</f>")), "<f>***</f>");
    let attr = xml_text.replace('"', "&quot;").replace('\'', "&apos;");
    assert_eq!(s.redact(&format!("m=\"{attr}\"")), "m=\"***\"");
    assert_eq!(s.redact(&format!("{v:?}")), "\"***\"");
}

#[test]
fn a_value_split_across_chunks_is_hidden_at_every_split() {
    let s = set(&[S, "another-secret-99"]);
    let text = format!("line one {S}\nand another-secret-99 then {S}{S} end\n");
    let bytes = text.as_bytes();
    let want = s.redact(&text).into_owned();
    assert!(!want.contains(S));
    for a in 0..bytes.len() {
        for b in a..bytes.len() {
            let mut c = Carry::default();
            let mut out = c.push_with(&s, &bytes[..a]);
            out.extend(c.push_with(&s, &bytes[a..b]));
            out.extend(c.push_with(&s, &bytes[b..]));
            out.extend(c.finish_with(&s));
            assert_eq!(String::from_utf8(out).unwrap(), want, "split at {a}, {b}");
        }
    }
}

#[test]
fn a_carry_holds_back_no_more_than_a_value_could_need() {
    let s = set(&["12345678"]);
    let mut c = Carry::default();
    let out = c.push_with(&s, b"abcdefghijklmnop");
    assert_eq!(
        out, b"abcdefghi",
        "7 bytes held: a value of 8 may start there"
    );
    assert_eq!(c.finish_with(&s), b"jklmnop");
    // With nothing to hide, nothing is held.
    let mut c = Carry::default();
    assert_eq!(c.push_with(&Secrets::new(), b"abc"), b"abc");
}

#[test]
fn ccci_redact_is_a_comma_list_of_names_and_absolute_paths() {
    assert_eq!(
        redact::parse(" TOKEN, /run/key ,,_X1,TOKEN").unwrap(),
        vec![
            Item::Var("TOKEN".into()),
            Item::File("/run/key".into()),
            Item::Var("_X1".into())
        ]
    );
    for bad in ["1TOKEN", "relative/path", "A-B", "TOKEN=x"] {
        let e = redact::parse(bad).unwrap_err();
        assert_eq!(cc_ci_run::exit::code_for(&e), 2);
        let msg = format!("{e:#}");
        assert!(msg.contains("CCCI_REDACT") && msg.contains(bad), "{msg}");
    }
}

#[test]
fn unset_variables_and_short_values_are_warnings_an_unreadable_file_is_exit_2() {
    let env: Env = [
        ("LONG".to_string(), "a-long-token-1".to_string()),
        ("SHORT".to_string(), "abc".to_string()),
        ("EMPTY".to_string(), String::new()),
    ]
    .into_iter()
    .collect();
    let items = redact::parse("LONG,SHORT,EMPTY,UNSET,/key,/pem").unwrap();
    let read = |p: &str| match p {
        "/key" => Ok(b"file-secret-42\n".to_vec()),
        "/pem" => Ok(b"-----BEGIN KEY-----\r\nAAAABBBBCCCC\r\nDD\r\n".to_vec()),
        _ => Err(std::io::Error::from(std::io::ErrorKind::NotFound)),
    };
    let (values, warnings) = redact::values(&items, &env, read).unwrap();
    assert_eq!(
        values,
        [
            "a-long-token-1",
            "file-secret-42",
            "-----BEGIN KEY-----\r\nAAAABBBBCCCC\r\nDD",
            "-----BEGIN KEY-----",
            "AAAABBBBCCCC"
        ]
    );
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert!(warnings[0].contains("SHORT") && warnings[0].contains("shorter than 8"));
    assert!(warnings[1].contains("EMPTY") && warnings[1].contains("not set"));
    assert!(warnings[2].contains("UNSET"));
    let e = redact::values(&redact::parse("/missing").unwrap(), &env, read).unwrap_err();
    assert_eq!(cc_ci_run::exit::code_for(&e), 2);
    assert!(format!("{e:#}").contains("\"/missing\": the file cannot be read"));
}

#[test]
fn the_secrets_table_of_app_new_is_read_in_box_and_ascii_forms() {
    let boxed = "\
example.ci.localhost created: /x/example.ci.localhost.env (recipe example, version 1.0.0)
┌─────────┬──────────────────────────────────┐
│ NAME    │ VALUE                            │
├─────────┼──────────────────────────────────┤
│ api_key │ tEuOrb6MUMLVwCZ8csCb2zNqzVeqnzlC │
│ db_pass │ Zm9vYmFyYmF6cXV4                 │
└─────────┴──────────────────────────────────┘
";
    assert_eq!(
        redact::generated_secrets(boxed),
        ["tEuOrb6MUMLVwCZ8csCb2zNqzVeqnzlC", "Zm9vYmFyYmF6cXV4"]
    );
    let ascii = "\
+---------+----------+
| Name    | Value    |
+---------+----------+
| api_key | abcdefgh |
+---------+----------+
";
    assert_eq!(redact::generated_secrets(ascii), ["abcdefgh"]);
    assert!(redact::generated_secrets("| a | b |\nno table\n").is_empty());
    let titled = "| SECRET NAME | VALUE |\n| db_password | hunter2hunter2 |\n";
    assert_eq!(redact::generated_secrets(titled), ["hunter2hunter2"]);
}

#[test]
fn a_cut_never_splits_a_value() {
    let s = set(&["0123456789"]);
    let text = b"aaaaa0123456789bbbbb";
    // A cut inside the value moves to its start; elsewhere it stays.
    for at in 6..15 {
        assert_eq!(s.cut_before(text, at), 5, "cut at {at}");
    }
    for at in [1, 5, 15, 18] {
        assert_eq!(s.cut_before(text, at), at);
    }
    assert_eq!(Secrets::new().cut_before(text, 8), 8);
}
