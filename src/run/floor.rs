//! The floor (SPEC section 3 step 9): before a tier's own tests, a
//! built-in test named `floor` asks the app for `CCCI_APP_URL` (or the
//! recipe's ready probe, SPEC section 3b) until it answers or the probe's
//! bound passes. A recipe with no tests of its own still proves that each
//! tier serves; a tier whose app does not answer is red before its tests.
//!
//! - the default probe: `GET CCCI_APP_URL`, any 2xx or 3xx (redirects are
//!   not followed: a 3xx is an answer);
//! - `http PATH [STATUS...]`: `GET` of PATH at the app URL's origin
//!   (scheme, host, port), the statuses given (else any 2xx or 3xx);
//! - `tcp PORT`: a TCP connection to the app URL's host at PORT.
//!
//! The certificate of an `https` URL is not verified: test apps get no
//! ACME certificate (`LETS_ENCRYPT_ENV=`), so the proxy answers with its
//! own; the floor proves that the app serves, not the certificate. No
//! HTTP proxy of the environment is used: the floor talks to the app.
//!
//! Each attempt runs on a thread of its own while the caller waits on the
//! run's latch (signals and the run deadline set it), so a cancelled run
//! never sits in the floor: it returns within a tenth of a second, and the
//! abandoned attempt ends by its own timeout.

use std::fmt;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::Run;
use crate::config;
use crate::ext::Interrupted;
use crate::say;
use crate::settings::Probe;
use crate::sys::latch::Latch;
use crate::testrun::{self, meta::Tier, report::TestReport};

/// The bound of the floor when the recipe sets no `ready_timeout`.
pub const DEFAULT_BOUND: Duration = Duration::from_secs(120);

/// The longest one attempt may take (less near the bound).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Between the end of an attempt and the start of the next.
const INTERVAL: Duration = Duration::from_secs(1);

/// How often the wait for an attempt looks at the latch.
const LATCH_TICK: Duration = Duration::from_millis(100);

/// What the floor asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `GET url`; an empty `statuses` accepts any 2xx or 3xx.
    Http { url: String, statuses: Vec<u16> },
    /// A TCP connection to `host:port`.
    Tcp { host: String, port: u16 },
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Http { url, statuses } if statuses.is_empty() => {
                write!(f, "GET {url} (expecting 2xx or 3xx)")
            }
            Target::Http { url, statuses } => {
                let s: Vec<String> = statuses.iter().map(u16::to_string).collect();
                write!(f, "GET {url} (expecting {})", s.join(" or "))
            }
            Target::Tcp { host, port } => write!(f, "TCP connect to {host}:{port}"),
        }
    }
}

/// The parts of an `http://` or `https://` URL the probes need (the
/// config validated its form): the origin and the host without a port.
struct Origin<'a> {
    origin: &'a str,
    host: String,
}

fn origin(url: &str) -> Origin<'_> {
    let after = url.find("://").map_or(0, |i| i + 3);
    let end = url[after..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| after + i);
    let authority = &url[after..end];
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let host = if let Some(rest) = authority.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest).to_string()
    } else {
        authority.split(':').next().unwrap_or(authority).to_string()
    };
    Origin {
        origin: &url[..end],
        host,
    }
}

/// What the floor asks for an app at `app_url` with the recipe's probe.
pub fn target(app_url: &str, probe: Option<&Probe>) -> Target {
    match probe {
        None => Target::Http {
            url: app_url.to_string(),
            statuses: Vec::new(),
        },
        Some(Probe::Http { path, statuses }) => Target::Http {
            url: format!("{}{path}", origin(app_url).origin),
            statuses: statuses.clone(),
        },
        Some(Probe::Tcp { port }) => Target::Tcp {
            host: origin(app_url).host,
            port: *port,
        },
    }
}

/// One attempt's result.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Answer {
    /// The app answered as expected (the status, or `connected`).
    Ok(String),
    /// It answered, but not as expected (an HTTP status).
    Wrong(String),
    /// The host's name did not resolve.
    Unresolved(String),
    /// No answer (refused, reset, timed out, TLS failed).
    None(String),
}

impl Answer {
    fn words(&self) -> &str {
        match self {
            Answer::Ok(s) | Answer::Wrong(s) | Answer::Unresolved(s) | Answer::None(s) => s,
        }
    }
}

fn attempt(target: &Target, timeout: Duration) -> Answer {
    match target {
        Target::Http { url, statuses } => {
            let tls = ureq::tls::TlsConfig::builder()
                .disable_verification(true)
                .build();
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .timeout_global(Some(timeout))
                .http_status_as_error(false)
                .max_redirects(0)
                .proxy(None)
                .tls_config(tls)
                .build()
                .into();
            match agent.get(url).call() {
                Ok(resp) => {
                    let code = resp.status().as_u16();
                    let words = format!("HTTP {}", resp.status());
                    let good = if statuses.is_empty() {
                        (200..400).contains(&code)
                    } else {
                        statuses.contains(&code)
                    };
                    if good {
                        Answer::Ok(words)
                    } else {
                        Answer::Wrong(words)
                    }
                }
                Err(ureq::Error::HostNotFound) => {
                    Answer::Unresolved(format!("{}: host not found", origin(url).host))
                }
                Err(ureq::Error::Io(e)) if is_lookup_error(&e) => {
                    Answer::Unresolved(format!("{}: {e}", origin(url).host))
                }
                Err(e) => Answer::None(e.to_string()),
            }
        }
        Target::Tcp { host, port } => {
            let addrs = match (host.as_str(), *port).to_socket_addrs() {
                Ok(a) => a.collect::<Vec<_>>(),
                Err(e) => return Answer::Unresolved(format!("{host}: {e}")),
            };
            if addrs.is_empty() {
                return Answer::Unresolved(format!("{host}: no address"));
            }
            let mut last = String::new();
            for a in addrs {
                match TcpStream::connect_timeout(&a, timeout) {
                    Ok(_) => return Answer::Ok(format!("connected to {a}")),
                    Err(e) => last = format!("{a}: {e}"),
                }
            }
            Answer::None(last)
        }
    }
}

/// Whether an I/O error is a failed name lookup (getaddrinfo's errors
/// carry no errno: std reports them as uncategorised with this text).
fn is_lookup_error(e: &std::io::Error) -> bool {
    e.to_string().contains("failed to lookup address")
}

/// How the floor ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Answered: what, after how many attempts.
    Answered { answer: String, attempts: u32 },
    /// The bound passed: why, in words an operator acts on.
    Failed { reason: String },
    /// The latch was set (a signal, the run deadline).
    Cancelled,
}

/// Asks `target` until it answers, `bound` passes or `cancel` is set;
/// each attempt's result is written to `out` (the floor's captured
/// output) and, when it differs from the last, to the log.
pub fn ask(
    target: &Target,
    bound: Duration,
    cancel: Option<&Latch>,
    how_to_fix: &str,
    out: &mut dyn std::io::Write,
) -> Outcome {
    let started = Instant::now();
    let end = started + bound;
    let mut attempts = 0u32;
    let mut last: Option<Answer> = None;
    loop {
        if cancel.is_some_and(Latch::is_set) {
            return Outcome::Cancelled;
        }
        let now = Instant::now();
        let timeout = end.saturating_duration_since(now).min(ATTEMPT_TIMEOUT);
        attempts += 1;
        let answer = if timeout.is_zero() {
            Answer::None("no time left in the bound".into())
        } else {
            match run_attempt(target, timeout, cancel) {
                Some(a) => a,
                None => return Outcome::Cancelled,
            }
        };
        let at = crate::units::human(started.elapsed());
        let _ = writeln!(out, "[{at}] attempt {attempts}: {}", answer.words());
        if last.as_ref() != Some(&answer) {
            crate::say!("floor: {target}: {} (attempt {attempts})", answer.words());
        }
        if let Answer::Ok(words) = &answer {
            return Outcome::Answered {
                answer: words.clone(),
                attempts,
            };
        }
        last = Some(answer);
        let next = Instant::now() + INTERVAL;
        if next >= end {
            break;
        }
        if crate::sys::wait::sleep_until(next, cancel) {
            return Outcome::Cancelled;
        }
    }
    let last = last.unwrap_or(Answer::None("no attempt".into()));
    let bound_words = crate::units::human(bound);
    let reason = match &last {
        Answer::Unresolved(w) => format!(
            "{target}: the host does not resolve ({w}) in {attempts} attempt(s) over {bound_words}; {how_to_fix}"
        ),
        Answer::Wrong(w) => format!(
            "{target}: no expected answer within {bound_words} ({attempts} attempt(s)); last answer: {w}"
        ),
        Answer::None(w) | Answer::Ok(w) => format!(
            "{target}: no answer within {bound_words} ({attempts} attempt(s)); last error: {w}"
        ),
    };
    Outcome::Failed { reason }
}

/// One attempt on a thread of its own; None when `cancel` was set first.
fn run_attempt(target: &Target, timeout: Duration, cancel: Option<&Latch>) -> Option<Answer> {
    let (tx, rx) = mpsc::channel();
    let t = target.clone();
    let spawned = std::thread::Builder::new()
        .name("floor".into())
        .spawn(move || {
            let _ = tx.send(attempt(&t, timeout));
        });
    if let Err(e) = spawned {
        return Some(Answer::None(format!("could not start the attempt: {e}")));
    }
    // A name lookup is not bounded by the attempt's timeout: the wait is.
    let give_up = Instant::now() + timeout + LATCH_TICK;
    loop {
        match rx.recv_timeout(LATCH_TICK) {
            Ok(a) => return Some(a),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if cancel.is_some_and(Latch::is_set) {
                    return None;
                }
                if Instant::now() >= give_up {
                    return Some(Answer::None(format!(
                        "no answer within {}",
                        crate::units::human(timeout)
                    )));
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Some(Answer::None("the attempt ended without an answer".into()))
            }
        }
    }
}

// The floor as a step of the run: whether it is on, and the built-in test
// it adds before a tier's own tests, beside the probe it drives (run/mod.rs
// keeps the order of the phases).
impl Run {
    /// Whether the floor runs, and why not (SPEC section 3 step 9):
    /// `CCCI_FLOOR` when set, else the recipe's `floor`, else on.
    pub(super) fn floor_off(&self) -> Option<String> {
        match (self.cfg.floor, self.settings.floor.as_ref()) {
            (Some(false), _) => Some("CCCI_FLOOR=off".to_string()),
            (Some(true), _) => None,
            (None, Some(s)) if !s.value => Some(format!(
                "floor = false ({})",
                self.settings_origin(|s| s.floor.as_ref().map(|v| &v.from))
            )),
            (None, _) => None,
        }
    }

    /// The floor before a tier's own tests (SPEC section 3 step 9): asks
    /// the app (`CCCI_APP_URL` or the recipe's ready probe) until it
    /// answers or `ready_timeout` passes. Its report is the tier's first
    /// test; None when the floor is off. A signal or the run deadline
    /// ends it at once (an error: the run is cancelled).
    pub(super) fn floor(&mut self, tier: Tier, report_dir: &Path) -> Result<Option<TestReport>> {
        if let Some(why) = self.floor_off() {
            say!("{tier} tier: floor off ({why})");
            return Ok(None);
        }
        let probe = self.settings.ready_probe.as_ref().map(|p| &p.value);
        let target = target(&self.cfg.app_url, probe);
        let bound = self
            .settings
            .ready_timeout
            .as_ref()
            .map_or(DEFAULT_BOUND, |t| t.value);
        let how_to_fix = format!(
            "point CCCI_APP_URL_TEMPLATE (default {}; {{domain}} is the app's domain) at this host's proxy under a name that resolves here (such as a wildcard DNS record of the domain suffix to this host), or turn the floor off: CCCI_FLOOR=off, or `floor = false` in the recipe's ccci.toml",
            config::DEFAULT_APP_URL_TEMPLATE
        );
        say!(
            "{tier} tier: floor: {target}, within {}",
            crate::units::human(bound)
        );
        let out_dir = report_dir.join("output");
        let out_name = "output/floor.stdout";
        let mut out: Box<dyn std::io::Write> = match std::fs::create_dir_all(&out_dir)
            .and_then(|()| std::fs::File::create(report_dir.join(out_name)))
        {
            Ok(f) => Box::new(f),
            Err(e) => {
                say!(
                    "warning: {tier} tier: the floor's output file in {} could not be made: {e}",
                    out_dir.display()
                );
                Box::new(std::io::sink())
            }
        };
        let started_at = std::time::SystemTime::now();
        let started = Instant::now();
        let outcome = ask(
            &target,
            bound,
            Some(self.funnel.latch()),
            &how_to_fix,
            &mut out,
        );
        drop(out);
        let (result, reason) = match outcome {
            Outcome::Cancelled => {
                return Err(anyhow::Error::new(Interrupted).context("the floor was stopped"))
            }
            Outcome::Answered { answer, attempts } => {
                say!(
                    "{tier} tier: floor passed: {answer} after {attempts} attempt(s) ({})",
                    crate::units::human(started.elapsed())
                );
                (testrun::report::Outcome::Passed, None)
            }
            Outcome::Failed { reason } => {
                say!("{tier} tier: floor failed: {reason}");
                (
                    testrun::report::Outcome::Failed,
                    Some(format!("floor: {reason}")),
                )
            }
        };
        let bytes = std::fs::metadata(report_dir.join(out_name))
            .ok()
            .map(|m| m.len());
        Ok(Some(TestReport {
            result,
            reason,
            started: Some(crate::log::timestamp(started_at)),
            duration_ms: started.elapsed().as_millis() as u64,
            stdout: bytes.map(|_| out_name.to_string()),
            stdout_bytes: bytes,
            timeout_ms: bound.as_millis() as u64,
            attempts: 1,
            ..TestReport::named("floor", target.to_string(), "floor (built-in)".into())
        }))
    }
}
