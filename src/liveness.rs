//! Liveness of a connection, decided without a clock: the owner ticks
//! the state once per ping interval and marks it heard whenever input
//! arrived (once per read, not per frame). A connection
//! that sent nothing for an interval is pinged; one that stays silent
//! through `max_missed` pings and one more interval is dead (the scheme
//! of NATS's ping interval and maximum outstanding pings).

use std::time::Duration;

/// How often an idle connection is pinged, and how many unanswered pings
/// make it dead. The defaults are NATS's: 2 minutes and 2 pings.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(120);

/// See [`DEFAULT_PING_INTERVAL`].
pub const DEFAULT_PING_MAX: u32 = 2;

/// What a tick decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tick {
    /// The peer was heard from: nothing to do.
    Alive,
    /// The peer was silent: send a ping.
    Ping,
    /// The peer left `max_missed` pings unanswered: it is gone.
    Dead,
}

/// One connection's liveness state.
#[derive(Debug, Clone, Default)]
pub(crate) struct Liveness {
    heard: bool,
    outstanding: u32,
}

impl Liveness {
    /// Input arrived.
    #[inline]
    pub fn heard(&mut self) {
        self.heard = true;
    }

    /// A ping interval passed.
    pub fn tick(&mut self, max_missed: u32) -> Tick {
        if std::mem::take(&mut self.heard) {
            self.outstanding = 0;
            Tick::Alive
        } else if self.outstanding >= max_missed {
            Tick::Dead
        } else {
            self.outstanding += 1;
            Tick::Ping
        }
    }
}

/// The longest a dead peer can go unnoticed: `max_missed` pings and one
/// more interval after the last input.
pub fn detection_bound(interval: Duration, max_missed: u32) -> Duration {
    interval.saturating_mul(max_missed.saturating_add(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_peer_is_pinged_then_dead_after_max_missed() {
        let mut l = Liveness::default();
        assert_eq!(l.tick(2), Tick::Ping);
        assert_eq!(l.tick(2), Tick::Ping);
        assert_eq!(l.tick(2), Tick::Dead);
    }

    #[test]
    fn input_resets_the_count_and_spares_the_ping() {
        let mut l = Liveness::default();
        assert_eq!(l.tick(2), Tick::Ping);
        assert_eq!(l.tick(2), Tick::Ping);
        l.heard();
        assert_eq!(l.tick(2), Tick::Alive);
        assert_eq!(l.tick(2), Tick::Ping);
        l.heard();
        l.heard();
        assert_eq!(l.tick(2), Tick::Alive);
    }

    #[test]
    fn zero_max_is_dead_after_one_silent_interval() {
        let mut l = Liveness::default();
        assert_eq!(l.tick(0), Tick::Dead);
    }
}
