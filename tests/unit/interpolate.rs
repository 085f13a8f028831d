use std::collections::BTreeMap;

use cc_ci_run::run::interpolate::{interpolate, Error};

fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn value(text: &str, env: &[(&str, &str)]) -> String {
    match interpolate(text, &vars(env)) {
        Ok(i) => i.value,
        Err(e) => panic!("{text:?} with {env:?}: {e}"),
    }
}

fn error(text: &str, env: &[(&str, &str)]) -> Error {
    match interpolate(text, &vars(env)) {
        Ok(i) => panic!("{text:?} with {env:?} gave {:?}, want an error", i.value),
        Err(e) => e,
    }
}

fn column(text: &str) -> usize {
    match error(text, &[]) {
        Error::Malformed { column, .. } => column,
        other => panic!("{text:?}: {other:?}, want malformed"),
    }
}

#[test]
fn plain_and_braced_variables_take_their_values() {
    let env = [("A", "1"), ("STACK_NAME", "a_b"), ("lower", "x")];
    assert_eq!(value("no variables", &env), "no variables");
    assert_eq!(value("$A", &env), "1");
    assert_eq!(value("${A}", &env), "1");
    assert_eq!(value("x$A-y", &env), "x1-y");
    assert_eq!(
        value("coop-cloud.${STACK_NAME}.version", &env),
        "coop-cloud.a_b.version"
    );
    // a plain name is the longest run of name characters
    assert_eq!(value("$STACK_NAME.x", &env), "a_b.x");
    assert_eq!(value("$lower", &env), "x");
}

#[test]
fn unset_without_default_is_empty_and_reported() {
    let i = interpolate("a${NOPE}b$ALSO_NOPE", &vars(&[])).unwrap();
    assert_eq!(i.value, "ab");
    assert_eq!(i.unset(), ["NOPE", "ALSO_NOPE"]);
}

#[test]
fn colon_dash_defaults_when_unset_or_empty() {
    let text = "backupbot.backup=${ENABLE_BACKUPS:-true}";
    assert_eq!(value(text, &[]), "backupbot.backup=true");
    assert_eq!(
        value(text, &[("ENABLE_BACKUPS", "")]),
        "backupbot.backup=true"
    );
    assert_eq!(
        value(text, &[("ENABLE_BACKUPS", "false")]),
        "backupbot.backup=false"
    );
}

#[test]
fn dash_defaults_only_when_unset() {
    assert_eq!(value("${V-dflt}", &[]), "dflt");
    assert_eq!(value("${V-dflt}", &[("V", "")]), "");
    assert_eq!(value("${V-dflt}", &[("V", "set")]), "set");
}

#[test]
fn plus_forms_give_the_alternative_when_set() {
    assert_eq!(value("${V:+alt}", &[("V", "x")]), "alt");
    assert_eq!(value("${V:+alt}", &[("V", "")]), "");
    assert_eq!(value("${V:+alt}", &[]), "");
    assert_eq!(value("${V+alt}", &[("V", "x")]), "alt");
    assert_eq!(value("${V+alt}", &[("V", "")]), "alt");
    assert_eq!(value("${V+alt}", &[]), "");
}

#[test]
fn question_forms_pass_a_value_through() {
    assert_eq!(value("${V:?need V}", &[("V", "x")]), "x");
    assert_eq!(value("${V?need V}", &[("V", "")]), "");
}

#[test]
fn question_forms_are_errors_naming_the_variable_and_the_message() {
    for (text, env) in [
        ("${V:?}", vec![]),
        ("${V:?}", vec![("V", "")]),
        ("${V?}", vec![]),
    ] {
        let e = error(text, &env);
        assert_eq!(
            e,
            Error::Required {
                name: "V".into(),
                message: String::new()
            },
            "{text} {env:?}"
        );
        assert_eq!(e.to_string(), "required variable V is missing a value");
    }
    let e = error("x-${SECRET_VERSION:?set it in the env file}", &[]);
    assert_eq!(
        e.to_string(),
        "required variable SECRET_VERSION is missing a value: set it in the env file"
    );
    assert!(matches!(
        error("${V?gone}", &[]),
        Error::Required { ref name, ref message } if name == "V" && message == "gone"
    ));
}

#[test]
fn double_dollar_is_a_literal_dollar_and_never_a_variable() {
    assert_eq!(value("$$", &[]), "$");
    assert_eq!(value("a$$b", &[("b", "no")]), "a$b");
    assert_eq!(value("$${A}", &[("A", "no")]), "${A}");
    assert_eq!(value("^/api$$", &[]), "^/api$");
}

#[test]
fn words_are_literal_up_to_the_first_brace_as_docker_deploys_them() {
    // Measured with `docker stack deploy` (Docker 20.10): the label
    // `nested=${A:-${B:-c}}` with A and B unset is deployed as `${B:-c}`.
    let env = [("B", "bee")];
    assert_eq!(value("${A:-${B:-c}}", &env), "${B:-c}");
    assert_eq!(value("${A:-${B}}", &env), "${B}");
    assert_eq!(value("${A:-$B}", &env), "$B");
    assert_eq!(value("${A:-x$$y}", &env), "x$$y");
    assert_eq!(value("${A:-$}", &env), "$");
    assert_eq!(value("${A:-{x}}", &env), "{x}");
    // a set variable: the word is skipped up to its `}`, the rest is text
    assert_eq!(value("${B:-${C}}", &env), "bee}");
    assert_eq!(value("${B:+${C}}!", &env), "${C}!");
    assert_eq!(
        error("${A:?no $B}", &env).to_string(),
        "required variable A is missing a value: no $B"
    );
}

#[test]
fn variables_are_reported_in_order_with_their_values() {
    let i = interpolate(
        "${ENABLE_BACKUPS:-true} coop-cloud.${STACK_NAME}.x ${NOPE} $ENABLE_BACKUPS",
        &vars(&[("ENABLE_BACKUPS", "false"), ("STACK_NAME", "s")]),
    )
    .unwrap();
    assert_eq!(i.value, "false coop-cloud.s.x  false");
    assert_eq!(
        i.vars,
        [
            ("ENABLE_BACKUPS".to_string(), Some("false".to_string())),
            ("STACK_NAME".to_string(), Some("s".to_string())),
            ("NOPE".to_string(), None)
        ]
    );
    assert_eq!(i.unset(), ["NOPE"]);
}

#[test]
fn malformed_text_is_an_error_at_the_column_of_its_dollar() {
    assert_eq!(column("${VAR"), 1);
    assert_eq!(column("${}"), 1);
    assert_eq!(column("abc${"), 4);
    assert_eq!(column("ok ${A} ${"), 9);
    assert_eq!(column("${A:-x"), 1);
    assert_eq!(column("ok ${A:-${B"), 4);
    assert_eq!(column("price $5"), 7);
    assert_eq!(column("end $"), 5);
    assert_eq!(column("${1}"), 1);
    assert_eq!(column("${A:x}"), 1);
    assert_eq!(column("${A x}"), 1);
    assert_eq!(column("é${"), 2, "columns count characters, not bytes");
    let e = error("labels: ${VAR", &[]);
    assert_eq!(
        e.to_string(),
        "invalid interpolation at column 9: `${VAR` is not closed"
    );
    assert!(error("${}", &[]).to_string().contains("column 1"));
}
