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

/// The deadlines, one slot per [`Timer`]: nanoseconds from the first deadline set (the
/// table's epoch), `None` as `i64::MIN`. Five `Option<Instant>` took 80 bytes; this takes 56,
/// and every connection holds one.
#[derive(Clone, Debug)]
pub(crate) struct TimerTable {
    epoch: Option<Instant>,
    data: [i64; 5],
}

/// An empty slot.
const NONE: i64 = i64::MIN;

impl Default for TimerTable {
    fn default() -> Self {
        TimerTable {
            epoch: None,
            data: [NONE; 5],
        }
    }
}

impl TimerTable {
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        let epoch = *self.epoch.get_or_insert(at);
        // Saturated at about 292 years either way (`NONE` itself is never reached).
        let nanos = |d: std::time::Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        self.data[timer as usize] = match at.checked_duration_since(epoch) {
            Some(after) => nanos(after),
            None => -nanos(epoch - at),
        };
    }

    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        let offset = self.data[timer as usize];
        let epoch = self.epoch?;
        let magnitude = std::time::Duration::from_nanos(offset.unsigned_abs());
        match offset {
            NONE => None,
            0.. => epoch.checked_add(magnitude),
            _ => epoch.checked_sub(magnitude),
        }
    }

    pub(crate) fn stop(&mut self, timer: Timer) {
        self.data[timer as usize] = NONE;
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
        let earliest = Timer::ALL
            .into_iter()
            .filter(|&t| self.data[t as usize] != NONE)
            .min_by_key(|&t| self.data[t as usize])?;
        self.get(earliest)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    #[allow(
        clippy::disallowed_methods,
        reason = "a test reads the clock as a driver would"
    )]
    fn deadlines_before_and_after_the_first_come_back_exactly() {
        let start = Instant::now();
        let mut table = TimerTable::default();
        assert_eq!(table.next(), None);
        table.set(Timer::Connect, start + Duration::from_secs(10));
        table.set(
            Timer::KeepAliveReceive,
            start + Duration::from_nanos(1_500_000_001),
        );
        // Earlier than the table's epoch (the first deadline set).
        table.set(Timer::WillDelay, start + Duration::from_millis(3));
        assert_eq!(
            table.get(Timer::Connect),
            Some(start + Duration::from_secs(10))
        );
        assert_eq!(
            table.get(Timer::KeepAliveReceive),
            Some(start + Duration::from_nanos(1_500_000_001))
        );
        assert_eq!(
            table.get(Timer::WillDelay),
            Some(start + Duration::from_millis(3))
        );
        assert_eq!(table.get(Timer::PingResponse), None);
        assert_eq!(table.next(), Some(start + Duration::from_millis(3)));
        let expired: Vec<_> = table.take_expired(start + Duration::from_secs(2)).collect();
        assert_eq!(expired, [Timer::KeepAliveReceive, Timer::WillDelay]);
        assert_eq!(table.next(), Some(start + Duration::from_secs(10)));
        table.stop_connection_timers();
        assert_eq!(table.next(), None);
    }
}
