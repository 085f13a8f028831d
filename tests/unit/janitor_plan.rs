use cc_ci_run::janitor::plan::{candidates, Candidates, Gate, Mark};

fn gate() -> Gate {
    Gate::new(r"^example-(pr[1-9][0-9]*|b[0-9]+)\.ci\.localhost$", &[]).unwrap()
}

#[test]
fn candidates_read_marks_only_of_matching_apps_and_keep_unreadable_apart() {
    let apps: Vec<String> = [
        "example-b1.ci.localhost",
        "warm.example.org",
        "example-b2.ci.localhost",
        "example-b3.ci.localhost",
        "example-b1.ci.localhost",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut asked = Vec::new();
    let found = candidates(&apps, &gate(), |d| {
        asked.push(d.to_string());
        match d {
            "example-b1.ci.localhost" => Mark::Marked,
            "example-b2.ci.localhost" => Mark::Unmarked,
            _ => Mark::Unreadable("permission denied".into()),
        }
    });
    assert_eq!(
        found,
        Candidates {
            marked: vec!["example-b1.ci.localhost"],
            unmarked: vec!["example-b2.ci.localhost"],
            unreadable: vec![("example-b3.ci.localhost", "permission denied".into())],
        }
    );
    // Each matching app's env file is read once; a non-matching one never.
    assert_eq!(
        asked,
        [
            "example-b1.ci.localhost",
            "example-b2.ci.localhost",
            "example-b3.ci.localhost"
        ]
    );
}
