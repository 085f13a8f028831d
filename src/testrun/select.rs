//! Which discovered tests run, and in what order. Pure: no files, no
//! processes; the runner (`exec`) asks the [`Scheduler`] what to start next
//! and tells it how each test ended.
//!
//! Ordering rules (SPEC section 6): a test starts only after every test it
//! `depends-on` that is in the selection has passed; among the tests that are
//! ready, the higher `priority` goes first, then discovery order. A failed,
//! timed-out, cancelled or skipped dependency skips its dependents (and
//! theirs) with the reason. A `depends-on` naming a test outside the
//! selection (another tier, filtered out, not discovered) orders nothing and
//! skips nothing. A dependency cycle is an error that names it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;

use super::meta::{Level, Tier};
use super::TestCase;

/// What the command line selects on.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Only tests that run in this tier.
    pub tier: Option<Tier>,
    /// Only tests of this level (a test without a `level` key has none).
    pub level: Option<Level>,
    /// Only tests carrying any of these tags (empty: no tag filter).
    pub tags: Vec<String>,
    /// Include tests tagged `slow`. Asking for the `slow` tag includes them too.
    pub slow: bool,
}

/// Why a test was left out of the selection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeftOut {
    Tier(Tier),
    Level(Level),
    Tags,
    Slow,
}

impl fmt::Display for LeftOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeftOut::Tier(t) => write!(f, "not in tier {t}"),
            LeftOut::Level(l) => write!(f, "not of level {l}"),
            LeftOut::Tags => f.write_str("no matching tag"),
            LeftOut::Slow => f.write_str("tagged slow (use --slow)"),
        }
    }
}

/// The tests that pass the filter (indices into the discovered list, in
/// discovery order) and the others with the first reason they failed it.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    pub chosen: Vec<usize>,
    pub left_out: Vec<(usize, LeftOut)>,
}

/// Applies `filter` to the discovered tests.
pub fn select(tests: &[TestCase], filter: &Filter) -> Selection {
    let slow_ok = filter.slow || filter.tags.iter().any(|t| t == "slow");
    let mut out = Selection::default();
    for (i, t) in tests.iter().enumerate() {
        let why = if filter.tier.is_some_and(|tier| !t.meta.runs_in(tier)) {
            filter.tier.map(LeftOut::Tier)
        } else if filter.level.is_some_and(|l| t.meta.level != Some(l)) {
            filter.level.map(LeftOut::Level)
        } else if !filter.tags.is_empty() && !filter.tags.iter().any(|g| t.meta.has_tag(g)) {
            Some(LeftOut::Tags)
        } else if !slow_ok && t.meta.has_tag("slow") {
            Some(LeftOut::Slow)
        } else {
            None
        };
        match why {
            Some(w) => out.left_out.push((i, w)),
            None => out.chosen.push(i),
        }
    }
    out
}

/// Two discovered tests with the same name: `depends-on`, the checkpoint
/// and the reports name tests by file name, so names must be unique.
pub(crate) fn duplicate_names(tests: &[TestCase]) -> Option<(&TestCase, &TestCase)> {
    let mut seen: HashMap<&str, &TestCase> = HashMap::new();
    for t in tests {
        if let Some(first) = seen.insert(t.name.as_str(), t) {
            return Some((first, t));
        }
    }
    None
}

/// Dependencies that name no discovered test at all (likely typos; they
/// order nothing): (test, missing dependency).
pub(crate) fn unknown_dependencies(tests: &[TestCase]) -> Vec<(String, String)> {
    let names: std::collections::HashSet<&str> = tests.iter().map(|t| t.name.as_str()).collect();
    let mut out = Vec::new();
    for t in tests {
        for d in &t.meta.depends_on {
            if !names.contains(d.as_str()) {
                out.push((t.name.clone(), d.clone()));
            }
        }
    }
    out
}

/// A dependency cycle among the selected tests, named in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CycleError {
    pub cycle: Vec<String>,
}

impl fmt::Display for CycleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "depends-on cycle: {}", self.cycle.join(" -> "))
    }
}

impl std::error::Error for CycleError {}

/// Where a test stands in the scheduler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Pending,
    Running,
    Passed,
    Failed,
    Skipped,
}

/// One test as the scheduler sees it.
#[derive(Clone, Debug)]
pub struct Item {
    pub name: String,
    pub priority: i64,
    pub depends_on: Vec<String>,
}

impl Item {
    pub(crate) fn of(t: &TestCase) -> Item {
        Item {
            name: t.name.clone(),
            priority: t.meta.priority,
            depends_on: t.meta.depends_on.clone(),
        }
    }
}

/// The ready queue and the dependency bookkeeping of one suite. Indices are
/// positions in the item list it was built from.
#[derive(Clone, Debug)]
pub struct Scheduler {
    names: Vec<String>,
    priority: Vec<i64>,
    dependents: Vec<Vec<usize>>,
    /// Dependencies of each test that have not passed yet.
    waiting: Vec<usize>,
    state: Vec<State>,
    /// Max-heap on (priority, earlier index first). Entries whose test is no
    /// longer pending are dropped when popped.
    ready: BinaryHeap<(i64, Reverse<usize>)>,
}

impl Scheduler {
    /// Builds the scheduler; a dependency cycle among the items is an error.
    pub fn new(items: &[Item]) -> Result<Scheduler, CycleError> {
        let index: HashMap<&str, usize> = items
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.as_str(), i))
            .collect();
        let n = items.len();
        let mut deps = vec![Vec::new(); n];
        let mut dependents = vec![Vec::new(); n];
        for (i, t) in items.iter().enumerate() {
            for d in &t.depends_on {
                // Outside the selection: orders nothing, skips nothing.
                if let Some(&j) = index.get(d.as_str()) {
                    if !deps[i].contains(&j) {
                        deps[i].push(j);
                        dependents[j].push(i);
                    }
                }
            }
        }
        let waiting: Vec<usize> = deps.iter().map(Vec::len).collect();
        let priority: Vec<i64> = items.iter().map(|t| t.priority).collect();
        let names: Vec<String> = items.iter().map(|t| t.name.clone()).collect();
        if let Some(cycle) = find_cycle(&deps, &waiting, &dependents) {
            return Err(CycleError {
                cycle: cycle.into_iter().map(|i| names[i].clone()).collect(),
            });
        }
        let ready = (0..n)
            .filter(|&i| waiting[i] == 0)
            .map(|i| (priority[i], Reverse(i)))
            .collect();
        Ok(Scheduler {
            names,
            priority,
            dependents,
            waiting,
            state: vec![State::Pending; n],
            ready,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn name(&self, i: usize) -> &str {
        &self.names[i]
    }

    pub fn state(&self, i: usize) -> State {
        self.state[i]
    }

    /// The next test to start (marked running), or None when no pending
    /// test is ready now.
    pub fn next_ready(&mut self) -> Option<usize> {
        while let Some((_, Reverse(i))) = self.ready.pop() {
            if self.state[i] == State::Pending {
                self.state[i] = State::Running;
                return Some(i);
            }
        }
        None
    }

    /// Records that a pending test already passed (an earlier attempt of the
    /// same run, from the checkpoint): it will not run and it satisfies its
    /// dependents.
    pub fn passed_earlier(&mut self, i: usize) {
        if self.state[i] == State::Pending {
            self.state[i] = State::Running;
            self.finish(i, true);
        }
    }

    /// Records how a running test ended. On failure, returns the tests that
    /// are skipped because of it (transitively), each with its reason.
    pub fn finish(&mut self, i: usize, passed: bool) -> Vec<(usize, String)> {
        if passed {
            self.state[i] = State::Passed;
            for k in 0..self.dependents[i].len() {
                let d = self.dependents[i][k];
                self.waiting[d] -= 1;
                if self.waiting[d] == 0 && self.state[d] == State::Pending {
                    self.ready.push((self.priority[d], Reverse(d)));
                }
            }
            Vec::new()
        } else {
            self.state[i] = State::Failed;
            let mut skipped = Vec::new();
            self.skip_dependents(i, "failed", &mut skipped);
            skipped
        }
    }

    fn skip_dependents(&mut self, i: usize, how: &str, out: &mut Vec<(usize, String)>) {
        for k in 0..self.dependents[i].len() {
            let d = self.dependents[i][k];
            if self.state[d] == State::Pending {
                self.state[d] = State::Skipped;
                out.push((d, format!("depends on `{}`, which {how}", self.names[i])));
                self.skip_dependents(d, "was skipped", out);
            }
        }
    }

    /// Marks every pending test skipped (fail-fast, a stop request);
    /// returns them in index order.
    pub fn skip_pending(&mut self) -> Vec<usize> {
        let mut out = Vec::new();
        for (i, s) in self.state.iter_mut().enumerate() {
            if *s == State::Pending {
                *s = State::Skipped;
                out.push(i);
            }
        }
        out
    }

    /// No test is pending or running.
    pub fn is_done(&self) -> bool {
        !self
            .state
            .iter()
            .any(|s| matches!(s, State::Pending | State::Running))
    }

    /// The order in which the tests start when each one passes and one runs
    /// at a time: what `--list` prints and what a sequential run does.
    pub fn planned_order(&self) -> Vec<usize> {
        let mut sim = self.clone();
        let mut order = Vec::with_capacity(self.len());
        while let Some(i) = sim.next_ready() {
            order.push(i);
            sim.finish(i, true);
        }
        order
    }
}

/// Kahn's algorithm; the nodes it cannot order lie on or behind a cycle,
/// and following unfinished dependencies from one of them must come back
/// around.
fn find_cycle(
    deps: &[Vec<usize>],
    waiting: &[usize],
    dependents: &[Vec<usize>],
) -> Option<Vec<usize>> {
    let mut waiting = waiting.to_vec();
    let mut stack: Vec<usize> = (0..deps.len()).filter(|&i| waiting[i] == 0).collect();
    let mut done = vec![false; deps.len()];
    while let Some(i) = stack.pop() {
        done[i] = true;
        for &d in &dependents[i] {
            waiting[d] -= 1;
            if waiting[d] == 0 {
                stack.push(d);
            }
        }
    }
    let start = (0..deps.len()).find(|&i| !done[i])?;
    let mut path = vec![start];
    let mut cur = start;
    loop {
        let next = *deps[cur].iter().find(|&&d| !done[d])?;
        if let Some(pos) = path.iter().position(|&p| p == next) {
            let mut cycle = path[pos..].to_vec();
            cycle.push(next);
            return Some(cycle);
        }
        path.push(next);
        cur = next;
    }
}
