//! The broker's memory budget: what its input buffers, output queues,
//! registry and calls in flight hold, counted as they change, so that a
//! check is a few additions and never a scan.
//!
//! The counts are the bytes the broker was handed or asked to hold
//! (frame bytes, name bytes) plus a fixed cost per entry for the tables'
//! own room ([`ROUTE_COST`], [`NAME_COST`], [`PEER_COST`]), close to
//! what the allocator gives out, so that the budget follows the
//! process's resident memory within a small factor. When the total
//! reaches [`super::Limits::max_memory`], new work is refused with
//! `limit_exceeded` (see [`Budget::admit`]) while work in flight goes on:
//! results, emits, recalls and cancels always pass, and output always
//! queues (each queue has its own bound).

use super::core::Core;
use super::peer::CloseReason;
use super::ConnId;
use crate::error::{Error, ErrorCode};

/// What one call in flight costs: its route and its two links, in hash
/// tables at their usual load.
pub(super) const ROUTE_COST: usize = 160;

/// What one connection costs besides its buffers: its state, its socket,
/// its timers.
pub(super) const PEER_COST: usize = 1024;

/// What one stored name costs besides its bytes: the string's header and
/// allocation, its index entry.
pub(super) const NAME_COST: usize = 48;

/// The registry bytes a session with `name` and `methods` costs.
pub(super) fn session_cost(name: &str, methods: &[String]) -> usize {
    NAME_COST + name.len() + methods.iter().map(|m| NAME_COST + m.len()).sum::<usize>()
}

/// Hands the memory the allocator holds free back to the system, after a
/// table that a burst grew was shrunk: glibc keeps freed heap memory (and
/// raises its mmap threshold after the first large free, so later large
/// tables come from the heap too) unless asked. Costs a walk of the
/// heap, so it is called only when a large table shrank (at most a few
/// times per burst, each shrink halving the table).
pub(super) fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator; it
    // takes no pointer and is safe to call at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The bytes a session with `name` and `methods` adds to a listing frame
/// (an upper bound of its encoding: each length takes at most 5 bytes
/// here, names being far below 4 GiB).
pub(super) fn listing_cost(name: &str, methods: &[String]) -> usize {
    10 + name.len() + methods.iter().map(|m| 5 + m.len()).sum::<usize>()
}

/// The bytes counted against the budget, by kind.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Budget {
    /// Bytes read and not yet handed over (frames in progress).
    pub input: usize,
    /// Bytes queued for writing.
    pub output: usize,
    /// Registry bytes (see [`session_cost`]).
    pub registry: usize,
    /// What a listing of every session takes (see [`listing_cost`]):
    /// not memory, a bound kept under the frame limit.
    pub listing: usize,
    /// The most used since the last burst began.
    pub peak: usize,
    /// What was used at the last trim of the heap (or at the peak).
    pub trimmed_at: usize,
}

/// The peak past which a fall to a quarter of it trims the heap.
const TRIM_PEAK: usize = 8 << 20;

impl Budget {
    /// The total, with `routes` calls in flight and `peers` connections.
    pub fn used(&self, routes: usize, peers: usize) -> usize {
        self.input + self.output + self.registry + routes * ROUTE_COST + peers * PEER_COST
    }

    /// Whether new work may start: Err (`limit_exceeded`, naming
    /// `what`) when `used` reached `max`.
    pub fn admit(used: usize, max: usize, what: &str) -> Result<(), Error> {
        if used >= max {
            return Err(Error::new(
                ErrorCode::LimitExceeded,
                format!(
                    "the broker is at its memory budget ({used} of {max} bytes): {what} refused, try again later"
                ),
            ));
        }
        Ok(())
    }

    /// Moves a count from `before` to `after` bytes.
    pub fn adjust(count: &mut usize, before: usize, after: usize) {
        *count = (*count + after).saturating_sub(before);
    }
}

/// The budget's checks through the core.
impl Core {
    /// Bytes the memory budget counts now.
    pub(super) fn memory_used(&self) -> usize {
        self.budget.used(self.routes.len(), self.peers.len())
    }

    /// Gives memory back to the system once what the budget counts fell
    /// to a quarter of a peak of some MiB (a burst of calls cancelled, a
    /// large frame written), and again at each further fall to a
    /// quarter: called after each write of the output.
    pub(super) fn trim_after_burst(&mut self) {
        let used = self.memory_used();
        let b = &mut self.budget;
        if used > b.peak {
            b.peak = used;
            b.trimmed_at = used;
        } else if b.peak >= TRIM_PEAK && used < b.trimmed_at / 4 {
            // At a quarter of the peak, then of each level trimmed at: a
            // few trims per burst, down to what stays.
            trim_heap();
            b.trimmed_at = used;
        }
    }

    /// Whether new work may start under the memory budget; Err is the
    /// `limit_exceeded` to answer it with.
    pub(super) fn admit(&self, what: &str) -> Result<(), Error> {
        Budget::admit(self.memory_used(), self.limits().max_memory, what)
    }

    /// `id` holds `bytes` of input not yet handed over (after a read).
    /// Past the broker's input budget the connection is refused with
    /// `limit_exceeded`: its frame in progress cannot be taken.
    pub(super) fn input_buffered(&mut self, id: ConnId, bytes: usize) {
        let max = self.limits().max_input_bytes;
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        Budget::adjust(&mut self.budget.input, peer.input, bytes);
        peer.input = bytes;
        if bytes > 0 && self.budget.input > max && peer.reads() {
            let e = Error::new(
                ErrorCode::LimitExceeded,
                format!(
                    "the broker's input budget of {max} bytes is spent: this connection's frame in progress is refused"
                ),
            );
            self.stats.limits_exceeded += 1;
            self.refuse(id, CloseReason::OverLimit(e));
            self.process_closes();
        }
    }

    /// Whether `id` has more output queued than the high-water mark: its
    /// input is then not read (it is marked paused, and resumed by an
    /// [`Effect::Resume`] once its output is down to half the mark).
    pub(super) fn over_high_water(&mut self, id: ConnId) -> bool {
        let high = self.limits().output_high_water;
        let Some(peer) = self.peers.get_mut(&id) else {
            return false;
        };
        if peer.outbox.queued() <= high {
            return false;
        }
        if !peer.read_paused {
            peer.read_paused = true;
            self.stats.reads_paused += 1;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_adds_every_kind() {
        let b = Budget {
            input: 1,
            output: 2,
            registry: 3,
            ..Budget::default()
        };
        assert_eq!(b.used(2, 1), 6 + 2 * ROUTE_COST + PEER_COST);
    }

    #[test]
    fn admission_stops_at_the_budget() {
        assert!(Budget::admit(9, 10, "x").is_ok());
        let e = Budget::admit(10, 10, "a publish").unwrap_err();
        assert_eq!(e.code, ErrorCode::LimitExceeded);
        assert!(e.message.contains("a publish refused"), "{}", e.message);
    }

    #[test]
    fn a_session_costs_its_names_and_their_entries() {
        let methods = vec!["ab".to_string(), "c".to_string()];
        assert_eq!(session_cost("S", &methods), 3 * NAME_COST + 4);
    }
}
