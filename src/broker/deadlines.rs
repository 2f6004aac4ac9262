//! The core's deadlines and timers: a connection's handshake or frame
//! deadline passing, the end of each read (which arms or disarms the
//! frame deadline), and the ping interval's tick.

use super::core::{Core, Effect};
use super::peer::CloseReason;
use super::ConnId;
use crate::wire::Frame;

impl Core {
    /// The deadline of `id` passed: closed if it has not said hello
    /// (even when refused and its refusal is not written yet), or if the
    /// frame it started is still not complete.
    pub fn deadline_passed(&mut self, id: ConnId) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        if !peer.handshaken {
            self.condemn(id, CloseReason::HandshakeTimeout);
        } else if std::mem::take(&mut peer.frame_progress) {
            // Frames kept completing (a busy stream whose reads end
            // inside frames): the one in progress gets a new deadline.
            self.effects.push(Effect::ArmDeadline {
                conn: id,
                after: self.limits().frame_timeout,
            });
        } else if std::mem::take(&mut peer.frame_deadline) {
            self.condemn(id, CloseReason::FrameTimeout);
        }
        self.process_closes();
    }

    /// A read of `id` ended (once per read, not per frame): it was heard
    /// from, `completed` says whether a frame completed in it, and
    /// `mid_frame` whether it stopped inside a frame, which must then
    /// complete within [`Limits::frame_timeout`] (a frame started after
    /// others completed under an armed deadline gets at most twice
    /// that). Before its hello the handshake deadline covers it.
    pub fn read_done(&mut self, id: ConnId, completed: bool, mid_frame: bool) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        peer.liveness.heard();
        if !peer.handshaken {
            return;
        }
        if peer.frame_deadline == mid_frame {
            peer.frame_progress |= mid_frame && completed;
            return;
        }
        peer.frame_progress = false;
        peer.frame_deadline = mid_frame;
        self.effects.push(if mid_frame {
            Effect::ArmDeadline {
                conn: id,
                after: self.limits().frame_timeout,
            }
        } else {
            Effect::DisarmDeadline { conn: id }
        });
    }

    /// The ping interval of `id` passed: a silent connection is pinged,
    /// one that left its pings unanswered is closed like a disconnect.
    pub fn tick(&mut self, id: ConnId) {
        let max = self.limits().ping_max;
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        if !peer.reads() {
            return;
        }
        match peer.liveness.tick(max) {
            crate::liveness::Tick::Alive => {}
            crate::liveness::Tick::Ping => {
                let _ = self.send(id, &Frame::Ping);
            }
            crate::liveness::Tick::Dead => {
                self.condemn(id, CloseReason::Unresponsive);
                self.process_closes();
                return;
            }
        }
        let interval = self.limits().ping_interval;
        if !interval.is_zero() {
            self.effects.push(Effect::ArmTick {
                conn: id,
                after: interval,
            });
        }
    }
}
