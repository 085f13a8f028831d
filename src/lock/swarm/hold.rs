//! What a held swarm lock and its renewal thread share (`protocol` holds
//! the lock, `renew` keeps it): whether it was lost, and until when the
//! holder may believe in it.

use std::sync::Mutex;
use std::time::Duration;

/// What a holder and its renewal thread share: whether the lock was lost,
/// and the boot time at which the holder's belief ends (the send time of
/// its last create or renewal that was answered in time, plus the lease).
pub(super) struct HoldState {
    pub(super) lost: Option<Lost>,
    pub(super) end: Duration,
}

/// Why a held lock was lost, and whether the object at its ID may still be
/// removed at release: not when someone else rewrote it.
#[derive(Clone, Debug)]
pub(super) struct Lost {
    pub(super) why: String,
    pub(super) foreign: bool,
}

/// The shared state, even if a thread panicked while holding it: each
/// field is written whole, so what it holds is still meaningful.
pub(super) fn locked(state: &Mutex<HoldState>) -> std::sync::MutexGuard<'_, HoldState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// Marks the lock lost for `why`; `foreign` when someone else rewrote
/// its object (then release leaves the object alone).
pub(super) fn set_lost(state: &Mutex<HoldState>, why: &str, foreign: bool) {
    locked(state).lost = Some(Lost {
        why: why.to_string(),
        foreign,
    });
}
