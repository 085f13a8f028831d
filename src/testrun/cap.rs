//! The head-and-tail rule of SPEC section 1 for a test's output: of
//! everything a stream carries, the first half of `--test-output-limit` and
//! the last half are kept, with one line between them saying how many bytes
//! were dropped. Pure bookkeeping: [`HeadTail`] says which bytes of a
//! stream are head (written out at once) and keeps the tail in a ring of
//! half the limit, so the runner's memory per stream is bounded by the
//! setting, never by what a test prints or by how long its lines are.
//!
//! The output pump (`exec::output`) carries out what it decides, for the
//! captured file and for the test's lines on stderr and in the run's log.

use crate::testrun::report::human_bytes;

/// The smallest `--test-output-limit`: a head and a tail that hold a few
/// lines each, so a failure's last lines are never cut to nothing.
pub const MIN_LIMIT: u64 = 4 << 10;
/// The largest: the tail of each running test's streams is held in memory
/// (half the limit per stream) until the test ends.
pub const MAX_LIMIT: u64 = 256 << 20;

/// One stream's head and tail (see the module header).
#[derive(Clone, Debug)]
pub struct HeadTail {
    limit: u64,
    head: u64,
    tail: usize,
    total: u64,
    /// The last bytes past the head, at most `tail`; once full, `at` is the
    /// oldest byte (the next to be overwritten).
    ring: Vec<u8>,
    at: usize,
    /// The head's last byte (the dropped-bytes line starts a line of its own).
    head_last: Option<u8>,
}

impl HeadTail {
    /// The rule for `limit` bytes: the first `limit / 2` and the last
    /// `limit - limit / 2`.
    pub fn new(limit: u64) -> HeadTail {
        let head = limit / 2;
        HeadTail {
            limit,
            head,
            tail: usize::try_from(limit - head).unwrap_or(usize::MAX),
            total: 0,
            ring: Vec::new(),
            at: 0,
            head_last: None,
        }
    }

    /// Takes the stream's next bytes and returns how many of them, from the
    /// front, belong to the head (the caller writes those out now); the
    /// rest are kept as tail, the oldest tail bytes making room.
    pub fn push(&mut self, bytes: &[u8]) -> usize {
        let room = self.head.saturating_sub(self.total);
        let to_head = usize::try_from(room).map_or(bytes.len(), |r| r.min(bytes.len()));
        if to_head > 0 {
            self.head_last = Some(bytes[to_head - 1]);
        }
        self.total += bytes.len() as u64;
        let rest = &bytes[to_head..];
        if rest.is_empty() || self.tail == 0 {
            return to_head;
        }
        // Only the last `tail` bytes of a large write can survive it.
        let rest = &rest[rest.len().saturating_sub(self.tail)..];
        if self.ring.capacity() == 0 {
            // Once, at its final size: later pushes never reallocate.
            self.ring.reserve_exact(self.tail);
        }
        let fill = (self.tail - self.ring.len()).min(rest.len());
        self.ring.extend_from_slice(&rest[..fill]);
        for &b in &rest[fill..] {
            // The ring is full here: overwrite the oldest byte.
            self.ring[self.at] = b;
            self.at = (self.at + 1) % self.tail;
        }
        to_head
    }

    /// Bytes the stream carried.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The limit this rule keeps to.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The output offset of the oldest byte still kept in the tail (the
    /// total when none is).
    pub fn tail_start(&self) -> u64 {
        self.total - self.ring.len() as u64
    }

    /// Bytes dropped between the head and the tail.
    pub fn dropped(&self) -> u64 {
        self.tail_start().saturating_sub(self.head)
    }

    /// The kept tail from output offset `from` on (clamped to what is
    /// kept), oldest first, as the two parts of the ring.
    pub fn tail_from(&self, from: u64) -> (&[u8], &[u8]) {
        let (a, b) = if self.ring.len() < self.tail {
            (&self.ring[..], &self.ring[..0])
        } else {
            (&self.ring[self.at..], &self.ring[..self.at])
        };
        let skip = usize::try_from(from.saturating_sub(self.tail_start())).unwrap_or(usize::MAX);
        if skip <= a.len() {
            (&a[skip..], b)
        } else {
            (&a[..0], &b[(skip - a.len()).min(b.len())..])
        }
    }

    /// The line put between head and tail in the captured file (None when
    /// nothing was dropped): `stream` names it (`stdout`, `stderr`).
    pub fn dropped_line(&self, stream: &str) -> Option<String> {
        let dropped = self.dropped();
        if dropped == 0 {
            return None;
        }
        let lead = if self.head_last.is_some_and(|b| b != b'\n') {
            "\n"
        } else {
            ""
        };
        Some(format!(
            "{lead}[cc-ci-run: {dropped} bytes dropped here: the test wrote {} bytes to {stream}; --test-output-limit {} keeps the first {} and the last {}]\n",
            self.total,
            human_bytes(self.limit),
            human_bytes(self.head),
            human_bytes(self.tail as u64),
        ))
    }
}
