//! `cc-ci-run timeline`: one self-contained HTML page (inline SVG and CSS,
//! no script, no font or style fetched from anywhere) of the host's recent
//! runs: one row per app domain, one bar per run from its lock request to
//! its release, the wait hatched, the held part split by phase, coloured by
//! verdict with the Okabe-Ito palette (safe for the common colour
//! blindnesses) and the verdict also written out, in the bar, in its hover
//! title and in the table under the chart.
//!
//! [`render`] is pure (records, now, time zone → the page); only
//! [`command`] and [`refresh`] read the state directory and write a file
//! (atomically, so a static web server never serves a torn page).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};

use crate::config::Env;
use crate::exit::Failure;
use crate::log::parse_timestamp;
use crate::phase::Phase;
use crate::rundir::RunRecord;
use crate::units::human;
use crate::verdict::Verdict;

/// How far back the page looks without `--since` (and on refresh).
pub const DEFAULT_SINCE: Duration = Duration::from_secs(24 * 3600);

/// How many runs the page draws without `--limit` (and on refresh): the
/// newest this many in the window get a bar and a table row each; older
/// ones in the window are counted per app domain. 500 keeps the page of a
/// busy host's day under 1 MB (about 1.5 KB a run) and still readable.
pub const DEFAULT_LIMIT: usize = 500;

/// The variable that names the page a run refreshes when it finishes.
pub const FILE_VAR: &str = "CCCI_TIMELINE_FILE";

/// The local time zone the axis is written in: the offset from UTC, and
/// its name, in force at each instant of the window. A window that spans a
/// daylight-saving change has a span on each side of it, so every tick and
/// every start time is written in the offset of its own moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Zone {
    /// From when (Unix seconds) each offset holds, in time order; the
    /// first holds from the beginning of time.
    spans: Vec<(i64, Offset)>,
}

/// One offset of a zone: `CET`, +3600 s.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Offset {
    name: String,
    secs: i32,
}

impl Offset {
    /// `CET (UTC+01:00)`.
    fn label(&self) -> String {
        let sign = if self.secs < 0 { '-' } else { '+' };
        let a = self.secs.unsigned_abs();
        let off = format!("UTC{sign}{:02}:{:02}", a / 3600, (a / 60) % 60);
        if self.name.is_empty() || self.name == off {
            off
        } else {
            format!("{} ({off})", self.name)
        }
    }
}

/// How far apart `Zone::local` looks for a change of offset. No zone
/// changes its offset twice within this; each change found is then located
/// to the second.
const ZONE_PROBE: i64 = 15 * 60;

impl Zone {
    pub fn utc() -> Zone {
        Zone::fixed("UTC", 0)
    }

    /// One offset for all time.
    pub fn fixed(name: &str, offset_secs: i32) -> Zone {
        Zone {
            spans: vec![(
                i64::MIN,
                Offset {
                    name: name.into(),
                    secs: offset_secs,
                },
            )],
        }
    }

    /// This zone until `at`, then `name` at `offset_secs` (a daylight-saving
    /// change). Changes are added in time order.
    pub fn then(mut self, at: SystemTime, name: &str, offset_secs: i32) -> Zone {
        self.spans.push((
            unix_secs(at),
            Offset {
                name: name.into(),
                secs: offset_secs,
            },
        ));
        self
    }

    /// The process's local zone (TZ, else /etc/localtime) from `from` to
    /// `to`, from the C library's `localtime_r`: chrono is built without
    /// its clock and time zone database here, and libc already reads the
    /// system's. Looked at every [`ZONE_PROBE`]; each change of offset or
    /// name is then found to the second by bisection.
    pub fn local(from: SystemTime, to: SystemTime) -> Zone {
        let (from, to) = (unix_secs(from), unix_secs(to));
        let Some(first) = local_offset(from) else {
            return Zone::utc();
        };
        let mut zone = Zone {
            spans: vec![(i64::MIN, first)],
        };
        let mut t = from;
        while t < to {
            let next = (t + ZONE_PROBE).min(to);
            let here = &zone.spans[zone.spans.len() - 1].1;
            match local_offset(next) {
                Some(o) if o != *here => {
                    // The change lies in (t, next]: the first second that
                    // reads the new offset.
                    let (mut lo, mut hi) = (t, next);
                    while hi - lo > 1 {
                        let mid = lo + (hi - lo) / 2;
                        if local_offset(mid).as_ref() == Some(here) {
                            lo = mid;
                        } else {
                            hi = mid;
                        }
                    }
                    zone.spans.push((hi, o));
                }
                _ => {}
            }
            t = next;
        }
        zone
    }

    /// The offset in force at `t` (Unix seconds).
    fn at(&self, t: i64) -> &Offset {
        let i = self.spans.partition_point(|(from, _)| *from <= t);
        &self.spans[i.saturating_sub(1)].1
    }

    /// The stretches of `[a, b)` with one offset each: (start, end, offset
    /// seconds).
    fn segments(&self, a: i64, b: i64) -> Vec<(i64, i64, i64)> {
        let mut out = Vec::new();
        let mut start = a;
        let mut off = self.at(a).secs;
        for (from, o) in self.spans.iter().filter(|(from, _)| *from > a && *from < b) {
            out.push((start, *from, i64::from(off)));
            start = *from;
            off = o.secs;
        }
        out.push((start, b, i64::from(off)));
        out
    }

    /// `CET (UTC+01:00)`, or, when the offset changes between `a` and `b`,
    /// each offset with the local time it starts at:
    /// `CEST (UTC+02:00), CET (UTC+01:00) from 10-25 02:00`.
    pub fn label_between(&self, a: SystemTime, b: SystemTime) -> String {
        let (a, b) = (unix_secs(a), unix_secs(b));
        let mut text = self.at(a).label();
        for (from, o) in self
            .spans
            .iter()
            .filter(|(from, _)| *from > a && *from <= b)
        {
            let _ = write!(
                text,
                ", {} from {}",
                o.label(),
                format_at(*from, o.secs, "%m-%d %H:%M")
            );
        }
        text
    }

    /// `t` in the offset of its own moment.
    fn format(&self, t: SystemTime, pattern: &str) -> String {
        let secs = unix_secs(t);
        format_at(secs, self.at(secs).secs, pattern)
    }
}

fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn format_at(secs: i64, offset_secs: i32, pattern: &str) -> String {
    let off =
        chrono::FixedOffset::east_opt(offset_secs).or_else(|| chrono::FixedOffset::east_opt(0));
    match (chrono::DateTime::from_timestamp(secs, 0), off) {
        (Some(dt), Some(off)) => dt.with_timezone(&off).format(pattern).to_string(),
        _ => String::from("?"),
    }
}

/// The local offset and its name at `secs`, from `localtime_r`.
fn local_offset(secs: i64) -> Option<Offset> {
    let secs = secs as libc::time_t;
    // SAFETY: an all-zero `tm` is a valid value (integers and a null
    // pointer); localtime_r writes into it and returns null on failure.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call; localtime_r is the
    // thread-safe variant.
    if unsafe { libc::localtime_r(&secs, &mut tm).is_null() } {
        return None;
    }
    let name = if tm.tm_zone.is_null() {
        String::new()
    } else {
        // SAFETY: tm_zone points at a NUL-terminated string owned by the
        // C library that lives as long as the zone data (the process).
        unsafe { std::ffi::CStr::from_ptr(tm.tm_zone) }
            .to_string_lossy()
            .into_owned()
    };
    Some(Offset {
        name,
        secs: tm.tm_gmtoff as i32,
    })
}

/// What a run's bar shows: its verdict, or why it has none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shown {
    Verdict(Verdict),
    /// No verdict yet: the run is still going.
    Running,
    /// Finished without a verdict in its record.
    Unknown,
}

impl Shown {
    /// Everything a bar can show, in legend order.
    const LEGEND: [Shown; 11] = [
        Shown::Verdict(Verdict::Passed),
        Shown::Verdict(Verdict::Failed),
        Shown::Verdict(Verdict::Infra),
        Shown::Verdict(Verdict::TeardownFailed),
        Shown::Verdict(Verdict::Cancelled),
        Shown::Verdict(Verdict::Deadline),
        Shown::Verdict(Verdict::SelfProtect),
        Shown::Verdict(Verdict::BadInput),
        Shown::Verdict(Verdict::Duplicate),
        Shown::Running,
        Shown::Unknown,
    ];

    /// The word the page writes.
    fn word(self) -> &'static str {
        match self {
            Shown::Verdict(v) => v.as_str(),
            Shown::Running => "running",
            Shown::Unknown => "unknown",
        }
    }

    /// The colour (Okabe & Ito's palette; grey for what has no verdict)
    /// and whether text on that colour is white.
    fn colour(self) -> (&'static str, bool) {
        match self {
            Shown::Verdict(Verdict::Passed) => ("#009E73", true),
            Shown::Verdict(Verdict::Failed) => ("#D55E00", true),
            Shown::Verdict(Verdict::Infra) => ("#E69F00", false),
            Shown::Verdict(Verdict::TeardownFailed) => ("#CC79A7", false),
            Shown::Verdict(Verdict::Cancelled) => ("#56B4E9", false),
            Shown::Verdict(Verdict::Deadline) => ("#0072B2", true),
            Shown::Verdict(Verdict::SelfProtect) => ("#F0E442", false),
            Shown::Verdict(Verdict::BadInput) => ("#000000", true),
            Shown::Verdict(Verdict::Duplicate) => ("#999999", false),
            Shown::Running => ("#FFFFFF", false),
            Shown::Unknown => ("#DDDDDD", false),
        }
    }

    /// Its place in the legend.
    fn rank(self) -> usize {
        Shown::LEGEND
            .iter()
            .position(|s| *s == self)
            .unwrap_or(Shown::LEGEND.len())
    }
}

/// Escapes text for an XML/HTML text node or a quoted attribute.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters are not allowed in XML 1.0 text.
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// One run as the page draws it (times resolved).
#[derive(Clone, Debug)]
struct Bar<'a> {
    record: &'a RunRecord,
    shown: Shown,
    /// Lock request (or the run's start when it never asked for a lock).
    start: SystemTime,
    /// Lock acquired (None: never got it).
    acquired: Option<SystemTime>,
    /// Lock released, else the run's end, else now (still running).
    end: SystemTime,
}

fn bar_of(r: &RunRecord, now: SystemTime) -> Option<Bar<'_>> {
    let started = parse_timestamp(&r.started)?;
    let finished = r.finished.as_deref().and_then(parse_timestamp);
    let lock = r.lock.as_ref();
    let start = lock
        .and_then(|l| parse_timestamp(&l.requested))
        .unwrap_or(started);
    let acquired = match lock {
        Some(l) => l.acquired.as_deref().and_then(parse_timestamp),
        // No lock asked for (bad input, a duplicate): nothing was waited on.
        None => Some(start),
    };
    let end = lock
        .and_then(|l| l.released.as_deref())
        .and_then(parse_timestamp)
        .or(finished)
        .unwrap_or(now)
        .max(start);
    let shown = match (r.verdict, r.finished.is_some()) {
        (Some(v), _) => Shown::Verdict(v),
        (None, false) => Shown::Running,
        (None, true) => Shown::Unknown,
    };
    Some(Bar {
        record: r,
        shown,
        start,
        acquired: acquired.map(|a| a.clamp(start, end)),
        end,
    })
}

/// Whether the run shows in a page of the last `since` before `now`: it
/// ended (or is still running) inside the window.
pub fn in_window(r: &RunRecord, now: SystemTime, since: Duration) -> bool {
    let from = now.checked_sub(since).unwrap_or(SystemTime::UNIX_EPOCH);
    bar_of(r, now).is_some_and(|b| b.end >= from)
}

/// A tick step for the axis: the smallest of these giving at most ~10 ticks.
fn tick_step(span: Duration) -> Duration {
    const STEPS: [u64; 16] = [
        1,
        5,
        10,
        30,
        60,
        5 * 60,
        10 * 60,
        15 * 60,
        30 * 60,
        3600,
        2 * 3600,
        3 * 3600,
        6 * 3600,
        12 * 3600,
        86_400,
        7 * 86_400,
    ];
    let s = span.as_secs().max(1);
    let step = STEPS
        .iter()
        .copied()
        .find(|st| s / st <= 10)
        .unwrap_or(30 * 86_400);
    Duration::from_secs(step)
}

const WIDTH: f64 = 1280.0;
const LABEL_W: f64 = 250.0;
const RIGHT_PAD: f64 = 20.0;
const ROW_H: f64 = 26.0;
const BAR_H: f64 = 16.0;
const AXIS_H: f64 = 34.0;

fn ms(a: SystemTime, b: SystemTime) -> u64 {
    b.duration_since(a).unwrap_or_default().as_millis() as u64
}

fn dur(ms: u64) -> String {
    human(Duration::from_millis(ms))
}

/// The hover text of a run: id, recipe, ref, verdict, failed phase, and
/// the durations (wait, hold, each phase).
fn title_of(b: &Bar<'_>) -> String {
    let r = b.record;
    let mut t = format!(
        "run {}\nrecipe {} at {}\nverdict {}",
        r.run_id,
        r.recipe,
        r.git_ref,
        b.shown.word()
    );
    if let Some(code) = r.exit_code {
        let _ = write!(t, " (exit {code})");
    }
    if let Some(p) = &r.failed_phase {
        let _ = write!(t, "\nfailed phase {p}");
    }
    let _ = write!(t, "\napp {}", r.domain);
    match b.acquired {
        Some(a) if r.lock.is_some() => {
            let _ = write!(
                t,
                "\nwaited {} for the lock, held it {}",
                dur(ms(b.start, a)),
                dur(ms(a, b.end))
            );
        }
        Some(_) => t.push_str("\ntook no app lock"),
        None => {
            let _ = write!(
                t,
                "\nwaited {} and never got the lock",
                dur(ms(b.start, b.end))
            );
        }
    }
    let phases: Vec<String> = r
        .phases
        .iter()
        .filter(|p| p.name != Phase::Started)
        .filter_map(|p| Some(format!("{} {}", p.name, dur(p.duration_ms?))))
        .collect();
    if !phases.is_empty() {
        let _ = write!(t, "\nphases: {}", phases.join(", "));
    }
    t
}

/// `target` as a path relative to the directory `base` (both absolute;
/// lexical, as a browser resolves a relative link: no symlink is
/// followed).
pub fn relative_to(base: &Path, target: &Path) -> PathBuf {
    use std::path::Component;
    // `a/../b` is `b`, as std::path::absolute leaves it unresolved.
    fn parts(p: &Path) -> Vec<Component<'_>> {
        let mut out = Vec::new();
        for c in p.components() {
            match c {
                Component::CurDir => {}
                Component::ParentDir if matches!(out.last(), Some(Component::Normal(_))) => {
                    out.pop();
                }
                c => out.push(c),
            }
        }
        out
    }
    let (b, t) = (parts(base), parts(target));
    let common = b.iter().zip(&t).take_while(|(x, y)| x == y).count();
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c.as_os_str());
    }
    out
}

/// A relative path as a link: each byte outside the characters a URL path
/// carries as they are is percent-encoded (a space, `#`, `?`, `%`).
pub fn href(rel: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for &b in rel.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/+,=@:".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A run's artifacts (`CCCI_ARTIFACTS`) as the table shows them: each file
/// by its tier and name (`upgrade/shot.png`), linked relative to `base`,
/// the directory the page sits in (no base: names without links).
fn artifact_links(r: &RunRecord, base: Option<&Path>) -> String {
    let mut out = Vec::new();
    for a in &r.artifacts {
        let path = Path::new(a);
        // `.../artifacts/<tier>/<file...>`: shown from the tier on.
        let shown = a
            .rsplit_once("/artifacts/")
            .map_or_else(|| a.clone(), |(_, rest)| rest.to_string());
        match base {
            Some(base) if path.is_absolute() => out.push(format!(
                r#"<a class="artifact" href="{}">{}</a>"#,
                escape(&href(&relative_to(base, path))),
                escape(&shown)
            )),
            _ => out.push(escape(&shown)),
        }
    }
    out.join(" ")
}

/// The page (pure): `records` (any order; those outside the window are
/// left out), drawn at `now`, the axis in `zone`, the window `since`;
/// artifacts are named, not linked (see [`render_in`]); at most
/// [`DEFAULT_LIMIT`] runs drawn.
pub fn render(records: &[RunRecord], now: SystemTime, zone: &Zone, since: Duration) -> String {
    render_in(records, now, zone, Window::new(since, DEFAULT_LIMIT), None)
}

/// What the page shows: the runs that ended (or still run) within `since`,
/// of which the newest `limit` (by lock request) are drawn one by one and
/// the older ones summarised per app domain.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub since: Duration,
    pub limit: usize,
}

impl Window {
    pub fn new(since: Duration, limit: usize) -> Window {
        Window { since, limit }
    }
}

/// The older runs of one app domain, counted, not drawn.
#[derive(Default)]
struct Older {
    runs: usize,
    /// What the bars show → runs, in the legend's order when written.
    verdicts: Vec<(Shown, usize)>,
    first: Option<SystemTime>,
    last: Option<SystemTime>,
}

impl Older {
    fn add(&mut self, b: &Bar<'_>) {
        self.runs += 1;
        match self.verdicts.iter_mut().find(|(v, _)| *v == b.shown) {
            Some((_, n)) => *n += 1,
            None => self.verdicts.push((b.shown, 1)),
        }
        self.first = Some(self.first.map_or(b.start, |f| f.min(b.start)));
        self.last = Some(self.last.map_or(b.end, |l| l.max(b.end)));
    }
}

/// The table of the runs the limit left undrawn: one row per app domain
/// (empty when every run is drawn).
fn older_table(older: &[Bar<'_>], zone: &Zone) -> String {
    if older.is_empty() {
        return String::new();
    }
    let mut by_domain: std::collections::BTreeMap<&str, Older> = Default::default();
    for b in older {
        by_domain
            .entry(b.record.domain.as_str())
            .or_default()
            .add(b);
    }
    let mut table = format!(
        "<h2>{} older run(s) in the window, counted per app domain</h2><table class=\"older\"><thead><tr><th>app domain</th><th>runs</th><th>verdicts</th><th>first lock request</th><th>last release</th></tr></thead><tbody>",
        older.len()
    );
    for (domain, o) in &by_domain {
        let mut verdicts = o.verdicts.clone();
        verdicts.sort_by_key(|(v, n)| (v.rank(), std::cmp::Reverse(*n)));
        let verdicts: Vec<String> = verdicts
            .iter()
            .map(|(v, n)| format!("{n} {}", escape(v.word())))
            .collect();
        let when = |t: Option<SystemTime>| t.map(|t| zone.format(t, "%F %T")).unwrap_or_default();
        let _ = write!(
            table,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(domain),
            o.runs,
            verdicts.join(", "),
            escape(&when(o.first)),
            escape(&when(o.last)),
        );
    }
    table.push_str("</tbody></table>");
    table
}

/// [`render`] for a page that sits in the directory `base` (absolute):
/// each run's artifacts are links relative to it, so the page and the
/// state directory can be served together (or the page opened from disk)
/// and moved as one.
pub fn render_in(
    records: &[RunRecord],
    now: SystemTime,
    zone: &Zone,
    window: Window,
    base: Option<&Path>,
) -> String {
    let since = window.since;
    let from = now.checked_sub(since).unwrap_or(SystemTime::UNIX_EPOCH);
    let mut bars: Vec<Bar<'_>> = records
        .iter()
        .filter_map(|r| bar_of(r, now))
        .filter(|b| b.end >= from)
        .collect();
    bars.sort_by(|a, b| {
        a.start
            .cmp(&b.start)
            .then_with(|| a.record.run_id.cmp(&b.record.run_id))
    });
    // The newest `limit` are drawn; the rest are counted (a day of a busy
    // host drawn bar by bar is megabytes no browser scrolls usefully).
    let older: Vec<Bar<'_>> = bars
        .drain(..bars.len().saturating_sub(window.limit))
        .collect();
    let older_html = older_table(&older, zone);
    let mut domains: Vec<&str> = bars.iter().map(|b| b.record.domain.as_str()).collect();
    domains.sort_unstable();
    domains.dedup();

    // The time range: every bar, a little room either side.
    let t0 = bars.iter().map(|b| b.start).min().unwrap_or(from);
    let t1 = bars.iter().map(|b| b.end).max().unwrap_or(now).max(t0);
    let span = t1
        .duration_since(t0)
        .unwrap_or_default()
        .max(Duration::from_secs(60));
    let pad = span / 50;
    let (t0, t1) = (t0 - pad, t0 + span + pad);
    let plot_w = WIDTH - LABEL_W - RIGHT_PAD;
    let total = t1.duration_since(t0).unwrap_or_default().as_secs_f64();
    let x = |t: SystemTime| -> f64 {
        let d = t.duration_since(t0).unwrap_or_default().as_secs_f64();
        LABEL_W + plot_w * (d / total).clamp(0.0, 1.0)
    };
    let rows_h = ROW_H * domains.len().max(1) as f64;
    let height = AXIS_H * 2.0 + rows_h;

    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="runs per app domain over time">"#
    );
    // The wait: diagonal hatching, whatever the verdict.
    svg.push_str(
        r##"<defs><pattern id="wait" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#f2f2f2"/><line x1="0" y1="0" x2="0" y2="6" stroke="#777777" stroke-width="2"/></pattern></defs>"##,
    );

    // Rows, their labels and the grid.
    for (i, d) in domains.iter().enumerate() {
        let y = AXIS_H + ROW_H * i as f64;
        let _ = write!(
            svg,
            r#"<rect class="row{}" x="0" y="{y}" width="{WIDTH}" height="{ROW_H}"/>"#,
            if i % 2 == 0 { " even" } else { "" }
        );
        let shown: String = if d.chars().count() > 34 {
            let head: String = d.chars().take(33).collect();
            format!("{head}…")
        } else {
            d.to_string()
        };
        let _ = write!(
            svg,
            r#"<text class="domain" x="8" y="{:.1}"><title>{}</title>{}</text>"#,
            y + ROW_H / 2.0 + 4.0,
            escape(d),
            escape(&shown)
        );
    }
    let step = tick_step(t1.duration_since(t0).unwrap_or_default());
    let show_date =
        step >= Duration::from_secs(86_400) || zone.format(t0, "%F") != zone.format(t1, "%F");
    // Ticks: the multiples of the step in local time after t0, stretch by
    // stretch of one offset (a daylight-saving change moves local midnight,
    // or the hour, in UTC; the repeated hour of autumn gets its two ticks).
    let (t0_secs, t1_secs) = (unix_secs(t0), unix_secs(t1));
    let st = step.as_secs() as i64;
    let mut ticks = Vec::new();
    for (a, b, off) in zone.segments(t0_secs, t1_secs) {
        let mut t = (a + off + st - 1).div_euclid(st) * st - off;
        while t < b {
            if t > t0_secs {
                ticks.push(t);
            }
            t += st;
        }
    }
    for tick in ticks {
        let tick = SystemTime::UNIX_EPOCH + Duration::from_secs(tick.max(0) as u64);
        let tx = x(tick);
        let label = if show_date {
            zone.format(tick, "%m-%d %H:%M")
        } else if step < Duration::from_secs(60) {
            zone.format(tick, "%H:%M:%S")
        } else {
            zone.format(tick, "%H:%M")
        };
        let _ = write!(
            svg,
            r#"<line class="grid" x1="{tx:.1}" y1="{}" x2="{tx:.1}" y2="{}"/><text class="tick" x="{tx:.1}" y="{}">{label}</text><text class="tick" x="{tx:.1}" y="{}">{label}</text>"#,
            AXIS_H - 4.0,
            AXIS_H + rows_h + 4.0,
            AXIS_H - 10.0,
            AXIS_H + rows_h + 20.0,
        );
    }
    let _ = write!(
        svg,
        r#"<text class="zone" x="8" y="{}">time: {}</text>"#,
        AXIS_H - 10.0,
        escape(&zone.label_between(t0, t1))
    );
    if (from..=t1).contains(&now) && now > t0 {
        let nx = x(now);
        let _ = write!(
            svg,
            r#"<line class="now" x1="{nx:.1}" y1="{}" x2="{nx:.1}" y2="{}"><title>now</title></line>"#,
            AXIS_H,
            AXIS_H + rows_h
        );
    }

    // One group per run.
    for b in &bars {
        let row = domains
            .binary_search(&b.record.domain.as_str())
            .unwrap_or(0);
        let y = AXIS_H + ROW_H * row as f64 + (ROW_H - BAR_H) / 2.0;
        let (fill, light_text) = b.shown.colour();
        let (xs, xe) = (x(b.start), x(b.end));
        let _ = write!(
            svg,
            r#"<g class="run" data-run="{}" data-verdict="{}"><title>{}</title>"#,
            escape(&b.record.run_id),
            escape(b.shown.word()),
            escape(&title_of(b))
        );
        let held_from = b.acquired.unwrap_or(b.end);
        let xa = x(held_from);
        if b.acquired != Some(b.start) {
            let _ = write!(
                svg,
                r#"<rect class="wait" x="{xs:.1}" y="{y:.1}" width="{:.1}" height="{BAR_H}"/>"#,
                (xa - xs).max(1.0)
            );
        }
        if b.acquired.is_some() {
            let _ = write!(
                svg,
                r#"<rect class="held" x="{xa:.1}" y="{y:.1}" width="{:.1}" height="{BAR_H}" fill="{fill}"/>"#,
                (xe - xa).max(1.5)
            );
            // Phases inside the held part, alternately shaded so each
            // boundary shows; the failed phase outlined.
            let mut odd = false;
            for p in &b.record.phases {
                let (Some(ps), pe) = (
                    parse_timestamp(&p.started),
                    p.ended.as_deref().and_then(parse_timestamp),
                ) else {
                    continue;
                };
                let ps = ps.clamp(held_from, b.end);
                let pe = pe.unwrap_or(b.end).clamp(held_from, b.end);
                if pe <= ps || p.name == Phase::Started || p.name == Phase::Finished {
                    continue;
                }
                let failed = b.record.failed_phase == Some(p.name);
                let class = match (odd, failed) {
                    (_, true) => "phase failed",
                    (true, false) => "phase odd",
                    (false, false) => "phase",
                };
                odd = !odd;
                let (px, pw) = (x(ps), x(pe) - x(ps));
                let _ = write!(
                    svg,
                    r#"<rect class="{class}" x="{px:.1}" y="{y:.1}" width="{pw:.1}" height="{BAR_H}"><title>{}: {} ({})</title></rect>"#,
                    escape(&b.record.run_id),
                    escape(&p.name.to_string()),
                    dur(ms(ps, pe))
                );
            }
        }
        // The verdict in text where the bar has room: the word, else its
        // first letter (the legend says which).
        let held_w = xe - xa;
        let verdict = b.shown.word();
        let word = if held_w >= 7.0 * verdict.len() as f64 + 6.0 {
            Some(verdict.to_string())
        } else if held_w >= 10.0 {
            verdict.chars().next().map(|c| c.to_uppercase().to_string())
        } else {
            None
        };
        if let Some(w) = word {
            let _ = write!(
                svg,
                r#"<text class="verdict{}" x="{:.1}" y="{:.1}">{}</text>"#,
                if light_text { " light" } else { "" },
                xa + 3.0,
                y + BAR_H - 4.0,
                escape(&w)
            );
        }
        svg.push_str("</g>");
    }
    svg.push_str("</svg>");

    // The legend: every verdict's colour, its letter and its word; the wait.
    let mut legend = String::from(r#"<ul class="legend">"#);
    legend.push_str(
        r#"<li><svg xmlns="http://www.w3.org/2000/svg" width="28" height="14"><rect class="wait" width="28" height="14"/></svg> waiting for the app lock</li>"#,
    );
    for shown in Shown::LEGEND {
        let (c, v) = (shown.colour().0, shown.word());
        let _ = write!(
            legend,
            r##"<li><svg xmlns="http://www.w3.org/2000/svg" width="28" height="14"><rect width="28" height="14" fill="{c}" stroke="#333333"/></svg> {} = {v}</li>"##,
            v.chars()
                .next()
                .map(|c| c.to_uppercase().to_string())
                .unwrap_or_default()
        );
    }
    legend.push_str(
        r#"<li>phases alternate in shade inside a bar; the phase a red run failed in is outlined</li></ul>"#,
    );

    // The same runs as a table, newest first: the verdict in words for
    // every run, whatever the width of its bar.
    let mut table = String::from(
        "<table><thead><tr><th>run</th><th>recipe</th><th>ref</th><th>app domain</th><th>verdict</th><th>failed phase</th><th>lock requested</th><th>wait</th><th>held</th><th>artifacts</th></tr></thead><tbody>",
    );
    for b in bars.iter().rev() {
        let r = b.record;
        let wait = match b.acquired {
            Some(a) => dur(ms(b.start, a)),
            None => format!("{} (never got it)", dur(ms(b.start, b.end))),
        };
        let held = b.acquired.map(|a| dur(ms(a, b.end))).unwrap_or_default();
        let _ = write!(
            table,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"v\"><span class=\"swatch\" style=\"background:{}\"></span>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&r.run_id),
            escape(&r.recipe),
            escape(&r.git_ref),
            escape(&r.domain),
            b.shown.colour().0,
            escape(b.shown.word()),
            escape(&r.failed_phase.map(|p| p.to_string()).unwrap_or_default()),
            escape(&zone.format(b.start, "%F %T")),
            wait,
            held,
            artifact_links(r, base)
        );
    }
    table.push_str("</tbody></table>");

    let generated = zone.format(now, "%F %T");
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"/><meta name="viewport" content="width=device-width"/>
<title>cc-ci-run timeline</title>
<style>{CSS}</style></head>
<body><h1>cc-ci-run: runs per app domain</h1>
<p class="meta">{} run(s) over {} app domain(s), the last {}, drawn {generated} ({}). A bar runs from the lock request to its release; hover a bar for the run.{}</p>
{legend}
<div class="chart">{svg}</div>
{table}
{older_html}
</body></html>
"#,
        bars.len(),
        domains.len(),
        human(since),
        escape(&zone.label_between(from.min(t0), now.max(t1))),
        if older.is_empty() {
            String::new()
        } else {
            format!(
                " The newest {} are drawn; {} older run(s) in the window are counted per app domain under the table (<code>--limit</code> draws more).",
                bars.len(),
                older.len()
            )
        },
    )
}

const CSS: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:16px;color:#222;background:#fff}\
h1{font-size:18px;margin:0 0 4px}h2{font-size:15px;margin:16px 0 0}.meta{margin:0 0 8px;color:#444}\
.legend{list-style:none;padding:0;margin:0 0 8px;display:flex;flex-wrap:wrap;gap:4px 16px}\
.legend li{display:flex;align-items:center;gap:4px}.chart{overflow-x:auto}\
svg text{font:12px system-ui,sans-serif}.row{fill:#ffffff}.row.even{fill:#f6f6f6}\
.domain{fill:#222}.tick{fill:#555;text-anchor:middle;font-size:11px}.zone{fill:#555;font-size:11px}\
.grid{stroke:#d0d0d0;stroke-width:1}.now{stroke:#000;stroke-width:1.5;stroke-dasharray:4 3}\
.wait{fill:url(#wait);stroke:#777;stroke-width:.5}.held{stroke:#222;stroke-width:.6}\
.phase{fill:#ffffff;fill-opacity:0}.phase.odd{fill:#ffffff;fill-opacity:.28}\
.phase.failed{fill:none;stroke:#000;stroke-width:1.6}\
.run:hover .held{stroke-width:2}.verdict{fill:#000;font-size:10px;pointer-events:none}.verdict.light{fill:#fff}\
table{border-collapse:collapse;margin-top:12px;font-size:12px}th,td{border-bottom:1px solid #ddd;padding:2px 8px;text-align:left}\
.swatch{display:inline-block;width:10px;height:10px;border:1px solid #333;margin-right:4px}";

/// Where `--out` or CCCI_TIMELINE_FILE may write: a path whose directory
/// exists and that is not itself a directory, absolute for the variable (a
/// run's working directory is Drone's throwaway workspace); exit 2
/// otherwise, naming `what`.
pub fn check_out(what: &str, path: &Path, absolute: bool) -> Result<()> {
    let bad = |rule: &str| {
        Err(Failure::usage(format!(
            "invalid {what} {:?}: {rule}",
            path.display().to_string()
        )))
    };
    if absolute && !path.is_absolute() {
        return bad("must be an absolute path");
    }
    if path.is_dir() {
        return bad("is a directory; name the HTML file to write");
    }
    match path.parent() {
        Some(dir) if dir.as_os_str().is_empty() || dir.is_dir() => Ok(()),
        _ => bad("its directory does not exist"),
    }
}

/// The page a run refreshes, from CCCI_TIMELINE_FILE (None: unset or
/// empty); a bad value is exit 2 naming the variable.
pub fn file_from_env(env: &Env) -> Result<Option<PathBuf>> {
    match env.get(FILE_VAR).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => {
            let p = PathBuf::from(v);
            check_out(FILE_VAR, &p, true)?;
            Ok(Some(p))
        }
    }
}

/// The page's records, drawn now, its artifact links relative to the
/// directory of `out` (the state directory when the page goes to stdout:
/// where an operator serving the state directory puts it).
pub(crate) fn page(state_dir: &Path, window: Window, out: Option<&Path>) -> Result<String> {
    let since = window.since;
    let records = crate::rundir::load_records(state_dir)?;
    let now = SystemTime::now();
    // The zone over what the page can show: the window and a day before
    // it (a run that began earlier and ended inside), but no earlier than
    // the first run (a `--since` of years looks only where there are runs).
    let earliest = records
        .iter()
        .filter_map(|r| parse_timestamp(&r.started))
        .min()
        .unwrap_or(now);
    let day_before = now
        .checked_sub(since + Duration::from_secs(86_400))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let from = earliest.max(day_before).min(now);
    let dir = match out.and_then(Path::parent) {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        Some(_) => PathBuf::from("."),
        None => state_dir.to_path_buf(),
    };
    let base = std::path::absolute(&dir)
        .with_context(|| format!("failed to resolve {}", dir.display()))?;
    Ok(render_in(
        &records,
        now,
        &Zone::local(from, now),
        window,
        Some(&base),
    ))
}

/// Rewrites the page CCCI_TIMELINE_FILE named, `out` (after a run).
pub(crate) fn refresh(state_dir: &Path, out: &Path) -> Result<()> {
    let html = page(
        state_dir,
        Window::new(DEFAULT_SINCE, DEFAULT_LIMIT),
        Some(out),
    )?;
    crate::rundir::write_output(out, html.as_bytes())
}
