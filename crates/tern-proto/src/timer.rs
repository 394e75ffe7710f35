//! Timers: an enum indexing a small array of deadlines, after quinn-proto.

use std::time::Instant;

/// The timers an engine arms. A deadline that passes is handled by
/// [`handle_timeout`](crate::ClientSession::handle_timeout); a spurious call is harmless.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Timer {
    /// Client: the link has been idle for the keep alive; send PINGREQ [MQTT-3.1.2-20].
    KeepAliveSend,
    /// Client: a PINGREQ got no PINGRESP in time; the link is dead.
    PingResponse,
    /// Server: nothing heard for 1.5 times the keep alive [MQTT-3.1.2-22].
    KeepAliveReceive,
    /// Both: CONNECT (server) or CONNACK (client) did not arrive in time.
    Connect,
    /// Server: the Will Delay Interval after an unclean end has passed [MQTT-3.1.3-9].
    WillDelay,
}

impl Timer {
    pub(crate) const ALL: [Timer; 5] = [
        Timer::KeepAliveSend,
        Timer::PingResponse,
        Timer::KeepAliveReceive,
        Timer::Connect,
        Timer::WillDelay,
    ];
}

/// The deadlines, one slot per [`Timer`].
#[derive(Clone, Debug, Default)]
pub(crate) struct TimerTable {
    data: [Option<Instant>; 5],
}

impl TimerTable {
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        self.data[timer as usize] = Some(at);
    }

    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        self.data[timer as usize]
    }

    pub(crate) fn stop(&mut self, timer: Timer) {
        self.data[timer as usize] = None;
    }

    /// Stops every timer but the will delay, which outlives the connection.
    pub(crate) fn stop_connection_timers(&mut self) {
        for t in Timer::ALL {
            if t != Timer::WillDelay {
                self.stop(t);
            }
        }
    }

    pub(crate) fn next(&self) -> Option<Instant> {
        self.data.iter().flatten().min().copied()
    }

    /// Takes the timers whose deadline is at or before `now`, stopping them.
    pub(crate) fn take_expired(&mut self, now: Instant) -> impl Iterator<Item = Timer> + use<> {
        let mut expired = [None; 5];
        for (i, t) in Timer::ALL.into_iter().enumerate() {
            if self.get(t).is_some_and(|at| at <= now) {
                self.stop(t);
                expired[i] = Some(t);
            }
        }
        expired.into_iter().flatten()
    }
}
