//! Statistics counters that every core can update without taking the cache line from the
//! others.
//!
//! A broker counts on its hottest path: every delivery, every packet sent or read. With one
//! atomic per figure, both cores of a fan-out write the same cache lines for every message and
//! spend more time moving them between each other than delivering (perf showed two thirds of
//! the time of a mailbox push in its four statistics atomics). A [`Counter`] is one atomic per
//! shard, each on a cache line of its own; a thread always writes the shard it was given when
//! it first counted, and a reader sums (or, for a [`Peak`], takes the largest of) the shards.
//! Reads are rare (stats, `$SYS`, the metrics endpoint) and slightly dearer.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// One shard, alone on its cache line (128 bytes: x86 prefetches lines in pairs).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard(AtomicU64);

/// How many shards every counter has: the machine's threads, rounded up to a power of two, at
/// most 16 (a counter takes 2 KiB then; more threads than shards share some, which is still
/// correct and still far from one line for all).
fn shard_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .next_power_of_two()
            .min(16)
    })
}

/// This thread's shard index, handed out round robin on first use.
fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    INDEX.with(|i| *i) & (shard_count() - 1)
}

/// One atomic per shard: what both [`Counter`] and [`Peak`] are made of.
#[derive(Debug)]
struct Shards(Box<[Shard]>);

impl Default for Shards {
    fn default() -> Self {
        Shards((0..shard_count()).map(|_| Shard::default()).collect())
    }
}

impl Shards {
    /// This thread's shard.
    fn local(&self) -> &AtomicU64 {
        &self.0[shard_index()].0
    }

    /// Every shard's value.
    fn values(&self) -> impl Iterator<Item = u64> + '_ {
        self.0.iter().map(|s| s.0.load(Ordering::Relaxed))
    }
}

/// A sum that many threads add to (a counter) or add to and take from (a gauge).
#[derive(Debug, Default)]
pub(crate) struct Counter(Shards);

impl Counter {
    /// Adds `n`.
    pub(crate) fn add(&self, n: u64) {
        self.0.local().fetch_add(n, Ordering::Relaxed);
    }

    /// Takes `n` away (a gauge: the shard of a thread may go below zero, the sum does not).
    pub(crate) fn sub(&self, n: u64) {
        self.0.local().fetch_sub(n, Ordering::Relaxed);
    }

    /// The sum of every shard; 0 while a gauge is below zero (a take counted before the
    /// batch of pushes it took from, see `MailboxTally`).
    pub(crate) fn get(&self) -> u64 {
        let sum = self.0.values().fold(0u64, u64::wrapping_add);
        u64::try_from(sum.cast_signed()).unwrap_or(0)
    }
}

/// The largest value seen, recorded by many threads.
#[derive(Debug, Default)]
pub(crate) struct Peak(Shards);

impl Peak {
    /// Records `value`; a value not above this thread's largest costs a plain load.
    pub(crate) fn record(&self, value: u64) {
        let shard = self.0.local();
        if value > shard.load(Ordering::Relaxed) {
            shard.fetch_max(value, Ordering::Relaxed);
        }
    }

    /// The largest value recorded by any thread.
    pub(crate) fn get(&self) -> u64 {
        self.0.values().max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn sums_and_peaks_across_threads() {
        let counter = Arc::new(Counter::default());
        let peak = Arc::new(Peak::default());
        let threads: Vec<_> = (0..8u64)
            .map(|t| {
                let (counter, peak) = (counter.clone(), peak.clone());
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        counter.add(3);
                        counter.sub(1);
                        peak.record(t * 1000 + i);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(counter.get(), 8 * 1000 * 2);
        assert_eq!(peak.get(), 7999);
    }

    #[test]
    fn a_gauge_taken_down_on_another_thread_sums_to_zero() {
        let gauge = Arc::new(Counter::default());
        gauge.add(5);
        let other = gauge.clone();
        std::thread::spawn(move || other.sub(5)).join().unwrap();
        assert_eq!(gauge.get(), 0);
    }
}
