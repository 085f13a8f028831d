//! App-domain locks whose authority is the swarm's raft store (SPEC section
//! 11): one lock authority for several runner hosts that feed one swarm.
//!
//! **The object is a swarm config** named from the domain
//! ([`object_name`]). A config is the smallest object the managers keep in
//! raft: creating one is a single replicated write that the managers refuse
//! when the name exists (`AlreadyExists`), so "create" is an atomic
//! test-and-set across every host of the swarm. It needs no image, no
//! scheduler and no task (a zero-replica service would need an image to
//! exist on each node, and the scheduler would watch it), its labels can be
//! rewritten through the engine API's versioned update (`POST
//! /configs/{id}/update?version=N`, refused with "update out of sequence" when
//! anyone wrote since version N), and its ID is never reused. Create,
//! inspect, list, remove and the update all go through the one engine
//! client (`ext::docker`, the Engine API on `DOCKER_HOST`).
//!
//! The protocol, and the race each step closes:
//! - **acquire** = a config create (`POST /configs/create`) with the holder, the lease and
//!   the margin in labels. Two hosts racing get one success and one
//!   `AlreadyExists`. The lease runs from the moment the create is *sent*,
//!   measured on CLOCK_BOOTTIME ([`boot_now`], which counts a suspend).
//!   Then the object is **read back by its ID**: acquired means it is still
//!   there with our token and more than the safety allowance
//!   ([`Lease::safety`](crate::lock::backend::Lease::safety), one call bound) of the lease left. A create whose
//!   answer came too late (a slow engine, this process stopped right after
//!   the create committed) is removed by its ID and tried again; one that
//!   was taken over meanwhile is gone, and we wait like anyone else.
//! - **renew** = read the object by ID, check the labels are still the ones
//!   we wrote (our token and renewal count), then the versioned update with
//!   the version just read: a write by anyone in between makes the update
//!   fail, and we stop instead of overwriting it. Renewals are scheduled
//!   from the send time of the last one that went through (the create's,
//!   first); a renewal counts only when its answer came within the renewal
//!   bound ([`Lease::renew_bound`](crate::lock::backend::Lease::renew_bound): at most half the margin), and extends
//!   the holder's belief to its send time plus the lease. A lease that ran
//!   out by the boot clock is never renewed again. A renewal that finds
//!   the object gone or changed, or cannot succeed before the lease ends,
//!   marks the lock lost and tells the holder (a run stops its work and
//!   tears down, exit 3).
//! - **mutating steps** (deploy, undeploy, app rm, backup, restore, the
//!   janitor's reap) first ask [`AppLock::may_mutate`](crate::lock::backend::AppLock::may_mutate): refused once the
//!   lock is lost or has less than the safety allowance left. A teardown
//!   that may not proceed leaves the app to the next holder's pre-clean.
//! - **release** = remove by ID. An ID names one object forever, so a
//!   release can never delete a lock that someone re-created in between.
//! - **take-over**: judged by the **engine's clock only**. The taker asks
//!   the engine's time (`GET /info`'s `SystemTime`) *first*, then reads
//!   the object; the lease is dead when that time is past the object's
//!   manager-set `UpdatedAt` (bumped by the create and every renewal) plus
//!   the larger lease and the larger margin of its own settings and the
//!   holder's labels. Then it removes that exact ID and creates anew. Two
//!   takers race on the create; a taker whose `rm ID` finds nothing, in any
//!   of the forms "not found" comes in ([`classify_refusal`]), lost a race
//!   and waits.
//!
//! **Why two hosts never both believe they hold the lock.** Let S be the
//! real time a holder sent its last counted create or renewal; the engine
//! applied it at U >= S, so its `UpdatedAt` reads U (the engine's clock).
//! The holder's belief ends at S plus the lease, by its boot clock. A
//! taker removes the object only when its engine-time reading T exceeds
//! U' plus lease plus margin, where U' is the `UpdatedAt` it read *after*
//! T. Every renewal the holder counted was answered within the renewal
//! bound (under half the margin), so it was applied before S plus half the
//! margin; if it was applied before T, the taker's read shows it (U' >= S).
//! A renewal applied after T was sent after T minus half the margin, which
//! is past U' plus the lease: past the end of the holder's belief as of
//! U', and a holder never sends a renewal for a lease that ran out. Hence
//! the holder's belief ends at S + lease <= U' + lease < T - margin,
//! before the take-over. No host's own wall clock enters: a host whose
//! clock is off the engine's is warned (past half the margin, on every
//! acquire and in `locks`), and a run refuses to start past the whole
//! margin, because its records and the janitor's ages would be wrong, not
//! because the lock would be.
//!
//! **What remains assumed, and what happens past each:**
//! - *Clock rates.* The holder's boot clock and the managers' clock advance
//!   at the same rate within margin / lease (NTP slews by < 0.05 %). A
//!   holder clock running slower by more shortens the taker's wait below
//!   the holder's belief by the difference: an overlap of at most that.
//!   A manager whose wall clock is *stepped* forward (not slewed) by more
//!   than the margin makes every live lease look dead at once: takers
//!   take over renewing leases, and their holders notice at their next
//!   renewal (the object is gone), having overlapped up to one renewal
//!   interval. The managers' clocks are the operator's to keep stepped
//!   only at boot.
//! - *One engine.* Every call goes to the manager `DOCKER_HOST` names;
//!   raft makes create, update and remove linearizable across managers.
//! - *Work already in flight.* [`AppLock::may_mutate`](crate::lock::backend::AppLock::may_mutate) is asked before
//!   each mutating step, not during one: an `abra app deploy` that started
//!   with the lease standing goes on after a loss until the run's lost-lease
//!   stop ends it (the SIGTERM, then SIGKILL after the run's grace). The
//!   safety allowance (one call bound, (lease − renew) / 2) is the time a
//!   step may take after its check before the lease could end; a step that
//!   takes longer while renewals also fail acts past it. Keep the grace
//!   (`CCCI_GRACE`) below the margin.
//! - *A paused holder between its check and its act.* A process stopped
//!   after `may_mutate` said yes acts when it resumes, possibly past its
//!   lease: no lock without fencing tokens at the resource can stop that.
//!   The window is the step's own start-up, not the whole step.
//! - *The engine's answers are bounded.* Every CLI call is bounded by the
//!   call bound and every renewal call by the renewal bound; an engine
//!   that applies a write after the call's timeout (the answer never came)
//!   leaves an object whose lease is measured from its send time, so it
//!   can only be shorter than the holder assumes, never longer. A manager
//!   cut off from the leader forwards a call whose caller gave up once it
//!   is back (Docker gives it 20 s, `swarmRequestTimeout`): a create
//!   applied after its acquire moved on carries a token nobody holds, so
//!   nobody believes in it; it delays the domain by lease + margin from
//!   its `UpdatedAt`, never admits a second holder.
//! - *Leader elections.* Without a leader the managers answer nothing
//!   about configs (swarmkit elects after 10 to 20 s). A holder whose
//!   renewals cannot land loses the lock at its lease's end; a waiter keeps
//!   trying through a minute of failing calls before it gives up.
//!   `tests/multiswarm` shows both on three real managers.

mod admin;
mod client;
mod lease;
mod protocol;
mod renew;
mod watch;

pub use admin::swarm_reports;
pub use client::{boot_now, classify_refusal, judge_skew, skew_ms, EngineTime, Refusal, Swarm};
pub use lease::{
    now_ms, object_name, parse_inspect, timestamp_ms, unix_ms, LeaseInfo, LockObject, LOCK_LABEL,
    NAME_MAX,
};
pub use protocol::{SwarmLock, SwarmLocks};
