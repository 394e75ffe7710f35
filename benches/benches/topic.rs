//! tern-topic: subscription trie lookups, insert/remove rates and bytes per subscription at
//! 10k, 100k and 1M subscriptions, and retained-store lookups by wildcard filter.
//!
//! The workload is an IoT fleet: 1,000 sites, devices spread over them, and per device
//! - its own command channel, exact: `site/{s}/device/{id}/cmd` (subscriber: the device);
//! - a digital twin's `site/+/device/{id}/telemetry` (subscriber: one of 64 twin shards);
//! - for one device in ten, a debugging session's `site/{s}/device/{id}/#`;
//!
//! and per site a gateway on `site/{s}/#` and an alarm panel on `site/{s}/device/+/alarm`,
//! plus fleet-wide `site/+/device/+/telemetry`, `#` and an 8-member shared group
//! `$share/ingest/site/+/device/+/telemetry`. Lookups publish to a random device's telemetry
//! or command topic, drawn from 65,536 pre-built topics (`cold`: at 1M the caches do not hold
//! the working set) or from 256 of them (`hot`).
//!
//! Bytes per subscription come from `stats_alloc`'s counting global allocator: heap bytes held
//! by the tree after building it (capacity slack included), divided by the number of
//! subscriptions.

use std::alloc::System;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tern_topic::{Match, RetainedTree, SubscriptionFilter, SubscriptionTree, TopicName, matches};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const SIZES: [(usize, &str); 3] = [(10_000, "10k"), (100_000, "100k"), (1_000_000, "1M")];
const SITES: usize = 1_000;
const TOPICS: usize = 1 << 16;

/// Per-subscription data as a broker keeps it: QoS, options, subscription identifier.
#[derive(Clone, Copy)]
#[allow(dead_code)]
struct SubData {
    qos: u8,
    options: u8,
    id: Option<NonZeroU32>,
}

/// A small deterministic generator (no dependency needed).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) as usize
    }
}

const DEVICE_KEYS: u64 = 0;
const TWIN_KEYS: u64 = 1 << 40;
const OTHER_KEYS: u64 = 1 << 41;

fn data(i: usize) -> SubData {
    SubData {
        qos: (i % 3) as u8,
        options: 0,
        id: NonZeroU32::new(i as u32 % 1000 + 1),
    }
}

/// Calls `sub` with the subscriptions of the workload until `n` were produced; returns the
/// number of devices.
fn workload(n: usize, mut sub: impl FnMut(&str, u64, SubData)) -> usize {
    let count = std::cell::Cell::new(0);
    let mut emit = |filter: &str, key: u64| {
        if count.get() < n {
            sub(filter, key, data(count.get()));
            count.set(count.get() + 1);
        }
    };
    emit("site/+/device/+/telemetry", OTHER_KEYS);
    emit("#", OTHER_KEYS + 1);
    for member in 0..8 {
        emit(
            "$share/ingest/site/+/device/+/telemetry",
            OTHER_KEYS + 10 + member,
        );
    }
    for site in 0..SITES {
        emit(&format!("site/s{site}/#"), OTHER_KEYS + 100 + site as u64);
        emit(
            &format!("site/s{site}/device/+/alarm"),
            OTHER_KEYS + 10_000 + site as u64,
        );
    }
    let mut device = 0;
    while count.get() < n {
        let site = device % SITES;
        emit(
            &format!("site/s{site}/device/d{device}/cmd"),
            DEVICE_KEYS + device as u64,
        );
        emit(
            &format!("site/+/device/d{device}/telemetry"),
            TWIN_KEYS + (device % 64) as u64,
        );
        if device.is_multiple_of(10) {
            emit(
                &format!("site/s{site}/device/d{device}/#"),
                OTHER_KEYS + 20_000 + device as u64,
            );
        }
        device += 1;
    }
    device
}

fn build(n: usize) -> (SubscriptionTree<u64, SubData>, usize) {
    let mut tree = SubscriptionTree::new();
    let devices = workload(n, |filter, key, value| {
        tree.insert(&SubscriptionFilter::new(filter).unwrap(), key, value);
    });
    (tree, devices)
}

fn topics(devices: usize) -> Vec<String> {
    let mut rng = Lcg(7);
    (0..TOPICS)
        .map(|_| {
            let device = rng.next() % devices;
            let kind = if rng.next().is_multiple_of(4) {
                "cmd"
            } else {
                "telemetry"
            };
            format!("site/s{}/device/d{device}/{kind}", device % SITES)
        })
        .collect()
}

fn lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("topic/lookup");
    group.throughput(Throughput::Elements(1));
    group
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    for (n, label) in SIZES {
        let region = Region::new(GLOBAL);
        let started = Instant::now();
        let (tree, devices) = build(n);
        let build_time = started.elapsed();
        let change = region.change();
        let bytes = change.bytes_allocated - change.bytes_deallocated;
        println!(
            "topic/memory/{label}: {} subscriptions, {} nodes, {} levels, built in {build_time:.2?}: \
             {bytes} heap bytes, {:.1} bytes/subscription",
            tree.len(),
            tree.node_count(),
            tree.level_count(),
            bytes as f64 / tree.len() as f64,
        );
        let topics = topics(devices);
        // Cold: 65,536 random devices, so that at 1M most of the path is not in cache. Hot:
        // 256 of them, the instructions of a lookup without the memory latency.
        for (kind, mask) in [("cold", TOPICS - 1), ("hot", 255)] {
            let mut next = 0;
            group.bench_function(BenchmarkId::new(kind, label), |b| {
                b.iter(|| {
                    next = (next + 1) & mask;
                    let mut reached = 0_u32;
                    tree.for_each_match(black_box(&topics[next]), |m| match m {
                        Match::Subscription { value, .. } => reached += u32::from(value.qos) + 1,
                        Match::Shared(group) => reached += group.len() as u32,
                    });
                    reached
                });
            });
        }
    }
    group.finish();
}

/// Inserting, then removing, batches of new subscriptions (device command channels and twin
/// subscriptions of new devices) into a tree of each size.
fn insert_remove(c: &mut Criterion) {
    const BATCH: usize = 1_000;
    let mut group = c.benchmark_group("topic/churn");
    group.throughput(Throughput::Elements(BATCH as u64));
    group
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for (n, label) in SIZES {
        let (mut tree, devices) = build(n);
        let filters: Vec<(SubscriptionFilter, u64)> = (0..BATCH / 2)
            .flat_map(|i| {
                let device = devices + i;
                let site = device % SITES;
                [
                    (
                        format!("site/s{site}/device/d{device}/cmd"),
                        DEVICE_KEYS + device as u64,
                    ),
                    (
                        format!("site/+/device/d{device}/telemetry"),
                        TWIN_KEYS + (device % 64) as u64,
                    ),
                ]
            })
            .map(|(filter, key)| (SubscriptionFilter::new(&filter).unwrap(), key))
            .collect();
        group.bench_function(BenchmarkId::new("insert", label), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let started = Instant::now();
                    for (i, (filter, key)) in filters.iter().enumerate() {
                        tree.insert(filter, *key, data(i));
                    }
                    total += started.elapsed();
                    for (filter, key) in &filters {
                        tree.remove(filter, key);
                    }
                }
                total
            });
        });
        group.bench_function(BenchmarkId::new("remove", label), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    for (i, (filter, key)) in filters.iter().enumerate() {
                        tree.insert(filter, *key, data(i));
                    }
                    let started = Instant::now();
                    for (filter, key) in &filters {
                        black_box(tree.remove(filter, key));
                    }
                    total += started.elapsed();
                }
                total
            });
        });
        assert_eq!(tree.len(), n);
    }
    group.finish();
}

/// Retained messages: every device has a retained `telemetry` and `status`; a new subscription
/// asks for the retained messages of one device through wildcards. The answer is 2 names at
/// every size, so the time should stay flat; the full scan is there for contrast.
fn retained(c: &mut Criterion) {
    let mut group = c.benchmark_group("topic/retained");
    group
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    group.sample_size(20);
    for (n, label) in SIZES {
        let devices = n / 2;
        let mut store = RetainedTree::new();
        for device in 0..devices {
            for kind in ["telemetry", "status"] {
                let name = format!("site/s{}/device/d{device}/{kind}", device % SITES);
                store.insert(TopicName::new(name).unwrap(), device as u32);
            }
        }
        let mut rng = Lcg(11);
        let filters: Vec<[String; 2]> = (0..1024)
            .map(|_| {
                let device = rng.next() % devices;
                [
                    format!("site/+/device/d{device}/+"),
                    format!("site/s{}/device/d{device}/#", device % SITES),
                ]
            })
            .collect();
        for (which, name) in [(0, "plus-plus"), (1, "exact-hash")] {
            let mut next = 0;
            group.bench_function(BenchmarkId::new(name, label), |b| {
                b.iter(|| {
                    next = (next + 1) & 1023;
                    let mut found = 0;
                    store.for_each_matching(black_box(&filters[next][which]), |_, _| found += 1);
                    assert_eq!(found, 2);
                    found
                });
            });
        }
        group.bench_function(BenchmarkId::new("scan-all-names", label), |b| {
            let filter = &filters[0][0];
            b.iter(|| {
                store
                    .iter()
                    .filter(|(name, _)| matches(filter, name))
                    .count()
            });
        });
    }
    group.finish();
}

criterion_group!(benches, lookup, insert_remove, retained);
criterion_main!(benches);
