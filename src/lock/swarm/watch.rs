//! A waiter's wake-up: the engine's events of one lock object.

use std::time::{Instant, SystemTime};

use crate::ext::docker::events::{self, since_arg, Stream};
use crate::ext::docker::Docker;
use crate::sys::latch::Latch;

/// Wakes a waiter when its lock object changes: the engine's events of
/// the object's name, so a release is seen in milliseconds without a
/// poll. The stream is replayed from just before the attempt
/// that found the lock busy (`--since`), so a release that lands between
/// that attempt and the moment the subscription is live is not missed. A
/// dead holder sends no event: the waiter also wakes at the lease's expiry
/// plus the margin. If the watch cannot start or its stream ends, the
/// waiter falls back to polling.
pub(super) struct Watch(Stream);

/// What ended a wait on a [`Watch`].
pub(super) enum Woke {
    /// An event, or the time ran out: try again.
    Again,
    Cancelled,
    /// The stream ended: poll instead.
    Closed,
}

impl Watch {
    pub(super) fn start(docker: &Docker, name: &str, since: SystemTime) -> Option<Watch> {
        let query = format!(
            "since={}&{}",
            since_arg(since),
            crate::ext::docker::api::filters(&[("type", "config"), ("config", name)])
        );
        docker.stream(&query).map(Watch)
    }

    /// Any event of the object means "look again".
    pub(super) fn wait(&mut self, cancel: Option<&Latch>, until: Instant) -> Woke {
        match self.0.wait(cancel, until, |_| true) {
            events::Woke::Event | events::Woke::Timeout => Woke::Again,
            events::Woke::Cancelled => Woke::Cancelled,
            events::Woke::Closed => Woke::Closed,
        }
    }
}
