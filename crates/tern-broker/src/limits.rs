//! The limits a connection task and the accept loops enforce beyond the engine's own: open
//! connections (global and per listener), topic length and levels, subscriptions per client
//! and the inbound rate. See [the configuration](crate::config#connection-limits).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::Limits;

/// Open connections counted against a limit (0: none), shared by the accept loops.
#[derive(Debug, Default)]
pub(crate) struct ConnectionCount {
    open: AtomicUsize,
    max: usize,
}

impl ConnectionCount {
    /// A count with this limit; 0 counts without limiting.
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(ConnectionCount {
            open: AtomicUsize::new(0),
            max,
        })
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Takes one slot, or `None` at the limit.
    fn acquire(self: &Arc<Self>) -> Option<Slot> {
        let max = if self.max == 0 { usize::MAX } else { self.max };
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |open| {
                (open < max).then_some(open + 1)
            })
            .ok()
            .map(|_| Slot(self.clone()))
    }
}

/// One open connection's place in a [`ConnectionCount`], given back on drop.
#[derive(Debug)]
struct Slot(Arc<ConnectionCount>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The slots an admitted connection holds until its task ends.
#[derive(Debug)]
pub(crate) struct Admission {
    _global: Slot,
    _listener: Option<Slot>,
}

/// Why a connection was refused at accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `limits.max_connections`.
    Global,
    /// The listener's `max_connections`.
    Listener,
}

impl Refusal {
    /// The label of `mqtt_connections_refused_total`.
    pub(crate) const fn label(self) -> &'static str {
        match self {
            Refusal::Global => "max_connections",
            Refusal::Listener => "listener_max_connections",
        }
    }
}

/// Connections refused at accept, by [`Refusal`].
#[derive(Debug, Default)]
pub(crate) struct Refused {
    counts: [AtomicU64; 2],
}

impl Refused {
    /// How many were refused for `reason`.
    pub(crate) fn get(&self, reason: Refusal) -> u64 {
        self.counts[reason as usize].load(Ordering::Relaxed)
    }
}

/// Admits a new connection against the global count and, for a listener with a limit of its
/// own, the listener's; a refusal is counted and logged.
pub(crate) fn admit(
    global: &Arc<ConnectionCount>,
    listener: Option<&Arc<ConnectionCount>>,
    refused: &Refused,
    peer: SocketAddr,
    local: Option<SocketAddr>,
) -> Result<Admission, Refusal> {
    // The listener's slot first: a connection refused by its listener does not take (and
    // briefly hold) a global one.
    let listener_slot = listener
        .map(|count| count.acquire().ok_or(Refusal::Listener))
        .transpose();
    let result = listener_slot.and_then(|listener_slot| {
        let global_slot = global.acquire().ok_or(Refusal::Global)?;
        Ok(Admission {
            _global: global_slot,
            _listener: listener_slot,
        })
    });
    if let Err(reason) = result {
        refused.counts[reason as usize].fetch_add(1, Ordering::Relaxed);
        let limit = match reason {
            Refusal::Global => global.max,
            Refusal::Listener => listener.map_or(0, |l| l.max),
        };
        let listener = local.map(|a| a.to_string()).unwrap_or_default();
        tracing::info!(%peer, %listener, limit, reason = reason.label(), "connection refused");
    }
    result
}

/// Whether a topic name or filter is within `limits.max_topic_length` bytes and
/// `limits.max_topic_levels` levels. `levels_of` is the part whose levels count (a shared
/// subscription's filter without `$share/{ShareName}/`).
pub(crate) fn topic_within(limits: &Limits, whole: &str, levels_of: &str) -> bool {
    if whole.len() > limits.max_topic_length {
        return false;
    }
    limits.max_topic_levels == 0
        || levels_of.bytes().filter(|&b| b == b'/').count() < limits.max_topic_levels
}

/// A token bucket holding at most one second's worth of tokens. Taking more than it holds
/// leaves a debt, paid back at the rate before the next take is allowed.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: u32, now: Instant) -> Option<Bucket> {
        (rate > 0).then(|| Bucket {
            rate: f64::from(rate),
            tokens: f64::from(rate),
            last: now,
        })
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.last = now;
    }

    fn take(&mut self, now: Instant, n: u64) {
        self.refill(now);
        self.tokens -= n as f64;
    }

    /// The whole tokens available now (0 while in debt).
    fn available(&mut self, now: Instant) -> u64 {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens as u64
        } else {
            0
        }
    }

    /// When at least one whole token is back, if none is now (rounded up to the next
    /// microsecond, so that a refill then finds the token whole).
    fn ready_at(&self) -> Option<Instant> {
        (self.tokens < 1.0).then(|| {
            let micros = ((1.0 - self.tokens) / self.rate * 1e6).ceil() as u64 + 1;
            self.last + Duration::from_micros(micros)
        })
    }
}

/// The inbound rate limit of one connection: PUBLISH packets and bytes per second. Reading
/// stops while either bucket is empty. Bytes are paced exactly (a read takes at most the
/// bytes available); messages on average: the PUBLISH packets of one read are all handled,
/// and reading resumes once the debt they left is paid back.
#[derive(Debug)]
pub(crate) struct InboundRate {
    // Boxed: every connection has one, few have a limit.
    messages: Option<Box<Bucket>>,
    bytes: Option<Box<Bucket>>,
}

impl InboundRate {
    /// The limits of `limits.max_inbound_*_per_second`.
    pub(crate) fn new(limits: &Limits) -> Self {
        let now = Instant::now();
        InboundRate {
            messages: Bucket::new(limits.max_inbound_messages_per_second, now).map(Box::new),
            bytes: Bucket::new(limits.max_inbound_bytes_per_second, now).map(Box::new),
        }
    }

    /// Counts bytes read.
    pub(crate) fn on_bytes(&mut self, n: usize) {
        if let Some(bucket) = &mut self.bytes {
            bucket.take(Instant::now(), n as u64);
        }
    }

    /// Counts one PUBLISH received.
    pub(crate) fn on_message(&mut self) {
        if let Some(bucket) = &mut self.messages {
            bucket.take(Instant::now(), 1);
        }
    }

    /// `Ok(n)` when reading may go on, taking at most `n` bytes; `Err(at)` while a bucket is
    /// empty, with when to look again.
    pub(crate) fn poll(&mut self) -> Result<u64, Instant> {
        let now = Instant::now();
        let messages = self.messages.as_mut().map(|b| b.available(now));
        let bytes = self.bytes.as_mut().map(|b| b.available(now));
        if messages == Some(0) || bytes == Some(0) {
            let at = [&self.messages, &self.bytes]
                .into_iter()
                .flatten()
                .filter_map(|b| b.ready_at())
                .max()
                .unwrap_or(now);
            return Err(at);
        }
        Ok(bytes.unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_count_refuses_beyond_its_limit_and_frees_on_drop() {
        let refused = Refused::default();
        let global = ConnectionCount::new(2);
        let listener = ConnectionCount::new(1);
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let a = admit(&global, Some(&listener), &refused, peer, None).unwrap();
        assert_eq!(
            admit(&global, Some(&listener), &refused, peer, None).unwrap_err(),
            Refusal::Listener
        );
        // The listener's refusal took no global slot.
        assert_eq!(global.open(), 1);
        let b = admit(&global, None, &refused, peer, None).unwrap();
        assert_eq!(
            admit(&global, None, &refused, peer, None).unwrap_err(),
            Refusal::Global
        );
        assert_eq!(
            (refused.get(Refusal::Listener), refused.get(Refusal::Global)),
            (1, 1)
        );
        drop(a);
        assert_eq!((global.open(), listener.open()), (1, 0));
        let _c = admit(&global, Some(&listener), &refused, peer, None).unwrap();
        drop(b);
        assert_eq!(global.open(), 1);
        // 0 is no limit.
        let unlimited = ConnectionCount::new(0);
        let slots: Vec<_> = (0..100)
            .map(|_| admit(&unlimited, None, &refused, peer, None).unwrap())
            .collect();
        assert_eq!(unlimited.open(), slots.len());
    }

    #[test]
    fn topic_limits_count_bytes_and_levels() {
        let limits = Limits {
            max_topic_length: 5,
            max_topic_levels: 2,
            ..Limits::default()
        };
        assert!(topic_within(&limits, "a/b", "a/b"));
        assert!(topic_within(&limits, "abcde", "abcde"));
        assert!(!topic_within(&limits, "abcdef", "abcdef"));
        assert!(!topic_within(&limits, "a/b/c", "a/b/c"));
        // Only the levels of the part given count.
        assert!(topic_within(&limits, "$s/g", "g"));
        // Multi-byte characters count in bytes.
        assert!(!topic_within(&limits, "ééé", "ééé"));
        let unlimited_levels = Limits {
            max_topic_levels: 0,
            ..Limits::default()
        };
        assert!(topic_within(&unlimited_levels, "/////", "/////"));
    }

    #[test]
    fn bucket_holds_one_second_and_pays_back_debt_at_the_rate() {
        let start = Instant::now();
        let mut bucket = Bucket::new(100, start).unwrap();
        assert_eq!(bucket.available(start), 100);
        bucket.take(start, 300);
        assert_eq!(bucket.available(start), 0);
        // 200 of debt plus one whole token: 2.01 s at 100/s.
        let ready = bucket.ready_at().unwrap();
        assert!(
            ready - start >= Duration::from_millis(2010),
            "{:?}",
            ready - start
        );
        assert!(
            ready - start < Duration::from_millis(2011),
            "{:?}",
            ready - start
        );
        assert_eq!(bucket.available(start + Duration::from_secs(2)), 0);
        assert_eq!(bucket.available(ready), 1);
        // Never more than one second's worth.
        assert_eq!(bucket.available(start + Duration::from_secs(60)), 100);
        assert!(Bucket::new(0, start).is_none());
    }
}
