//! `cc-ci-run summary [RUN]` and `cc-ci-run comment [RUN]`: a finished
//! run's summary (`views::summary`), printed, or posted as a comment on the
//! pull request through Gitea's API (`POST
//! /api/v1/repos/{owner}/{repo}/issues/{index}/comments`, a pull request
//! being an issue there, with `Authorization: token ...`).
//!
//! The request is made by curl (`CCCI_CURL`), the host's TLS and CA
//! store, started as every external program is (own process group,
//! PDEATHSIG, bounded). The token comes from `CCCI_FORGE_TOKEN` (a Drone
//! secret in the step's environment) and goes to curl in its
//! configuration on stdin (`-K -`, its `--config`), so it is in no command line
//! (`/proc/PID/cmdline` is world-readable), no trace line of the runner
//! and no log line; what the forge answers is printed with the token
//! replaced by `***`.
//!
//! Where the token goes is never the environment's to decide: the forge
//! is `--forge` (the pipeline's own file) or Drone's DRONE_REPO_LINK
//! (Drone overwrites a build parameter named DRONE_*), and no `CCCI_*`
//! variable names it.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::Result;

use crate::cli::{CommentArgs, SummaryArgs, SummaryFormat};
use crate::config::names::bad;
use crate::config::Env;
use crate::exit::{self, Failure};
use crate::views::summary;

/// The variable that carries the forge's API token.
pub const TOKEN_VAR: &str = "CCCI_FORGE_TOKEN";

fn env_nonempty<'a>(env: &'a Env, key: &str) -> Option<&'a str> {
    env.get(key).map(String::as_str).filter(|v| !v.is_empty())
}

/// The run a summary is about: RUN as given, else this Drone build's run
/// (`CCCI_RUN_ID`, else DRONE_REPO and DRONE_BUILD_NUMBER, as `run` names
/// it). Exit 2 when there is none.
pub fn run_id(given: Option<&str>, env: &Env) -> Result<String> {
    let id = match (given, env_nonempty(env, "CCCI_RUN_ID")) {
        (Some(id), _) | (None, Some(id)) => id.to_string(),
        (None, None) => {
            match (
                env_nonempty(env, "DRONE_REPO"),
                env_nonempty(env, "DRONE_BUILD_NUMBER"),
            ) {
                (Some(repo), Some(build)) => {
                    crate::config::names::check_drone_repo(repo)?;
                    let build = crate::config::names::check_build("DRONE_BUILD_NUMBER", build)?;
                    crate::config::drone_run_id(repo, build)
                }
                _ => {
                    return Err(Failure::usage(
                        "no run: give RUN (as `cc-ci-run status` lists it), or run inside the Drone build whose run it is (DRONE_REPO and DRONE_BUILD_NUMBER)",
                    ))
                }
            }
        }
    };
    crate::config::names::check_run_id(&id)?;
    Ok(id)
}

/// `cc-ci-run summary [RUN] [--format text|markdown]`, on stdout.
pub(crate) fn summary(state_dir: &Path, args: &SummaryArgs) -> Result<i32> {
    let env = crate::config::process_env();
    let id = run_id(args.run.as_deref(), &env)?;
    let s = summary::load(state_dir, &id)?;
    let text = match args.format {
        SummaryFormat::Text => summary::text(&s),
        SummaryFormat::Markdown => summary::markdown(&s),
    };
    write_stdout(&text)
}

fn write_stdout(text: &str) -> Result<i32> {
    use anyhow::Context as _;
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("failed to write the summary to stdout")?;
    Ok(exit::OK)
}

/// A repository as `OWNER/NAME`: each part letters, digits, `.`, `_`, `-`
/// (what Gitea allows), not `.` or `..`, 100 characters at most.
pub fn check_repo(field: &str, value: &str) -> Result<()> {
    let part_ok = |p: &str| {
        !p.is_empty()
            && p.len() <= 100
            && p != "."
            && p != ".."
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    };
    match value.split_once('/') {
        Some((owner, name)) if part_ok(owner) && part_ok(name) => Ok(()),
        _ => Err(bad(
            field,
            value,
            "must be OWNER/NAME (letters, digits, `.`, `_`, `-`)",
        )),
    }
}

/// A forge base URL: `http://` or `https://`, a host, an optional path;
/// printable ASCII with no space, quote, backslash, `?` or `#`. Returned
/// without a trailing `/`.
pub fn check_forge(field: &str, value: &str) -> Result<String> {
    const RULE: &str = "must be the forge's base URL, http(s)://HOST[:PORT][/PATH] (printable ASCII, no space, quote, backslash, `?` or `#`)";
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"));
    let ok = rest.is_some_and(|r| {
        let host = r.split('/').next().unwrap_or("");
        !host.is_empty()
            && !host.contains('@')
            && value.len() <= 500
            && value
                .bytes()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\'' | b'\\' | b'?' | b'#'))
    });
    if !ok {
        return Err(bad(field, value, RULE));
    }
    Ok(value.trim_end_matches('/').to_string())
}

/// The forge's base URL from DRONE_REPO_LINK (`https://git.example.org/
/// OWNER/NAME`) and DRONE_REPO (`OWNER/NAME`): the link without the
/// repository (a forge under a path keeps its path).
pub fn forge_from_link(link: &str, repo: &str) -> Option<String> {
    let link = link.trim_end_matches('/');
    let base = link.strip_suffix(repo)?.strip_suffix('/')?;
    (!base.is_empty()).then(|| base.to_string())
}

/// A token as a forge issues it: printable ASCII, no space or quote.
fn check_token(token: &str) -> Result<()> {
    let ok = !token.is_empty()
        && token.len() <= 500
        && token
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\\'));
    if ok {
        Ok(())
    } else {
        // Never the value: it is a secret, and a wrong one may be a real one.
        Err(Failure::usage(format!(
            "invalid {TOKEN_VAR}: must be a forge API token (printable ASCII, no space, quote or backslash)"
        )))
    }
}

/// `text` as a double-quoted string of curl's configuration syntax, where
/// a backslash escapes the next character (`\\`, `\"`; `\n` would be a
/// newline).
fn curl_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// curl's configuration for the request: the URL, the token's header and
/// the JSON body, read from stdin (`-K -`, its `--config`); the answer's body goes
/// to stdout followed by a last line with the HTTP status.
pub fn curl_config(url: &str, token: &str, body: &str, timeout: std::time::Duration) -> String {
    let json = serde_json::json!({ "body": body }).to_string();
    let secs = timeout.as_secs().max(1);
    [
        format!("url = {}", curl_quoted(url)),
        "request = \"POST\"".to_string(),
        format!(
            "header = {}",
            curl_quoted(&format!("Authorization: token {token}"))
        ),
        "header = \"Content-Type: application/json\"".to_string(),
        "header = \"Accept: application/json\"".to_string(),
        // No `Expect: 100-continue` round trip for a large body.
        "header = \"Expect:\"".to_string(),
        format!("data-binary = {}", curl_quoted(&json)),
        format!("connect-timeout = {}", secs.min(10)),
        format!("max-time = {secs}"),
        "silent".to_string(),
        "show-error".to_string(),
        "write-out = \"\\n%{http_code}\"".to_string(),
    ]
    .join("\n")
        + "\n"
}

/// What a curl run said: the HTTP status (the last line of its stdout)
/// and the answer's body before it.
pub fn split_answer(stdout: &str) -> (Option<u16>, &str) {
    match stdout.rsplit_once('\n') {
        Some((body, code)) => (code.trim().parse().ok(), body),
        None => (stdout.trim().parse().ok(), ""),
    }
}

/// `text` with every occurrence of `secret` replaced by `***`.
fn without(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        text.to_string()
    } else {
        text.replace(secret, "***")
    }
}

/// `cc-ci-run comment [RUN]`: posts the run's markdown summary to the pull
/// request. Bad input (no token, no pull request, a malformed URL or
/// repository) is exit 2 before anything is sent; a forge that refuses or
/// does not answer is exit 3, saying what it answered.
pub(crate) fn comment(state_dir: &Path, args: &CommentArgs) -> Result<i32> {
    let env = crate::config::process_env();
    let id = run_id(args.run.as_deref(), &env)?;
    crate::log::set_tag(&id);
    let repo = match (args.repo.as_deref(), env_nonempty(&env, "DRONE_REPO")) {
        (Some(r), _) => {
            check_repo("repo", r)?;
            r.to_string()
        }
        (None, Some(r)) => {
            check_repo("DRONE_REPO", r)?;
            r.to_string()
        }
        (None, None) => {
            return Err(Failure::usage(
                "no repository: pass --repo OWNER/NAME (DRONE_REPO is not set)",
            ))
        }
    };
    let forge = match (args.forge.as_deref(), env_nonempty(&env, "DRONE_REPO_LINK")) {
        (Some(f), _) => check_forge("forge", f)?,
        (None, Some(link)) => {
            let drone_repo = env_nonempty(&env, "DRONE_REPO").unwrap_or(&repo);
            let base = forge_from_link(link, drone_repo).ok_or_else(|| {
                bad(
                    "DRONE_REPO_LINK",
                    link,
                    "must end in /DRONE_REPO; pass --forge URL",
                )
            })?;
            check_forge("DRONE_REPO_LINK", &base)?
        }
        (None, None) => {
            return Err(Failure::usage(
                "no forge: pass --forge URL (DRONE_REPO_LINK is not set)",
            ))
        }
    };
    let s = summary::load(state_dir, &id)?;
    // A run still going (or one that died without finishing) has no
    // verdict to post yet; `status` and `summary` show where it is.
    if s.record.finished.is_none() {
        return Err(Failure::infra(format!(
            "run {id} has not finished (phase {}): no verdict to post",
            s.record.phase
        )));
    }
    let pr = match (args.pr.as_deref(), env_nonempty(&env, "DRONE_PULL_REQUEST")) {
        (Some(p), _) => crate::config::names::check_pr("pr", p)?,
        (None, Some(p)) => crate::config::names::check_pr("DRONE_PULL_REQUEST", p)?,
        (None, None) => s.record.pr.ok_or_else(|| {
            Failure::usage(format!(
                "no pull request: run {id} tested no pull request; pass --pr N"
            ))
        })?,
    };
    let token = if args.dry_run {
        String::new()
    } else {
        let t = env_nonempty(&env, TOKEN_VAR).ok_or_else(|| {
            Failure::usage(format!(
                "{TOKEN_VAR} is not set: give the step the forge's API token from a Drone secret (environment: {TOKEN_VAR}: from_secret: ...)"
            ))
        })?;
        check_token(t)?;
        t.to_string()
    };
    let body = summary::markdown(&s);
    let url = format!("{forge}/api/v1/repos/{repo}/issues/{pr}/comments");
    if args.dry_run {
        crate::say!(
            "dry run: would POST {} bytes of markdown to {url}",
            body.len()
        );
        return write_stdout(&body);
    }
    let curl = env_nonempty(&env, "CCCI_CURL").unwrap_or("curl");
    let mut cmd = Command::new(curl);
    cmd.args(["-K", "-"]);
    let config = curl_config(&url, &token, &body, args.timeout);
    let what = format!("curl (POST {url})");
    // curl's own --max-time ends it first; this bound catches a curl that
    // does not (a stuck DNS resolver), with room for its exit.
    let deadline = Instant::now() + args.timeout + std::time::Duration::from_secs(10);
    let ran = crate::sys::spawn::run_captured_with_input(
        &mut cmd,
        config.as_bytes(),
        None,
        Some(deadline),
        std::time::Duration::from_secs(2),
    )
    .map_err(|e| Failure::infra(without(&format!("failed to start {what}: {e:#}"), &token)))?;
    let out = match ran {
        crate::sys::spawn::Ran::Done(out) => out,
        _ => {
            return Err(Failure::infra(format!(
                "{what} did not finish within {}",
                crate::units::human(args.timeout)
            )))
        }
    };
    let (status, answer) = split_answer(&out.stdout);
    let answer = without(answer.trim(), &token);
    let stderr = without(out.stderr.trim(), &token);
    match status {
        Some(code) if out.status.success() && (200..300).contains(&code) => {
            crate::say!(
                "posted the summary of run {id} to {repo} pull request {pr} on {forge} (HTTP {code}, {} bytes)",
                body.len()
            );
            Ok(exit::OK)
        }
        Some(code) if code != 0 => Err(Failure::infra(format!(
            "the forge refused the comment on {repo} pull request {pr}: HTTP {code} from {url}: {}",
            one_line(&answer, 500)
        ))),
        _ => Err(Failure::infra(format!(
            "no answer from the forge for {repo} pull request {pr} ({url}): curl {}: {}",
            out.status,
            one_line(&stderr, 500)
        ))),
    }
}

/// The first `max` characters of `text` on one line.
fn one_line(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    if flat.trim().is_empty() {
        "(nothing)".into()
    } else {
        flat
    }
}
