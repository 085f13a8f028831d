//! The ownership marker of SPEC section 5 (pure): the comment line `run`
//! writes into an app's env file right after `abra app new`. The janitor
//! reaps only apps that match RUN_APP_RE *and* carry it, so a pattern alone
//! never decides that an operator's app may be destroyed. abra reads env
//! files with comments ignored, so the line changes nothing for it.

/// The start of the marker line; what follows names the run and the host.
pub(crate) const PREFIX: &str = "# cc-ci-run: created by run ";

/// Who created an app, as its marker says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Marker {
    pub run_id: String,
    pub host: String,
}

/// The marker line for an app created by `run_id` on `host` at `when`.
pub fn line(run_id: &str, host: &str, when: &str) -> String {
    format!(
        "{PREFIX}{run_id} on host {host} at {when} (the janitor may reap this app once that run is gone)"
    )
}

/// The marker of env-file text, if it has one.
pub fn find(text: &str) -> Option<Marker> {
    text.lines().find_map(|l| {
        let rest = l.trim_end().strip_prefix(PREFIX)?;
        let mut words = rest.split_whitespace();
        let run_id = words.next()?.to_string();
        let host = match (words.next(), words.next()) {
            (Some("on"), Some("host")) => words.next()?.to_string(),
            _ => return None,
        };
        crate::config::names::check_run_id(&run_id).ok()?;
        Some(Marker { run_id, host })
    })
}

/// Env-file text with the marker as its first line (an older marker, from
/// a run that re-created the app, is replaced).
pub fn with_marker(text: &str, marker_line: &str) -> String {
    let mut out = String::with_capacity(text.len() + marker_line.len() + 1);
    out.push_str(marker_line);
    out.push('\n');
    for l in text.lines().filter(|l| !l.starts_with(PREFIX)) {
        out.push_str(l);
        out.push('\n');
    }
    out
}
