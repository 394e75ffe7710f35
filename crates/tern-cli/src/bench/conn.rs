//! `tern bench conn`: open `--count` connections (CONNECT / CONNACK each), at most
//! `--concurrency` handshakes at once and at most `--ramp` new connections per second, then
//! hold them `--hold` seconds with keep alive pings, and close them with DISCONNECT.
//!
//! `connect_rate` is connections accepted per second from the first connect to the last
//! CONNACK; the latency figures are those of the handshakes (TCP connect to CONNACK).

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::pubsub::ping_interval;
use super::wire::Wire;
use super::{Common, histogram, percentiles, print_json};
use crate::Failure;

/// `tern bench conn` flags.
#[derive(Args, Debug, Clone)]
#[command(disable_help_flag = true)]
pub(crate) struct ConnBenchArgs {
    #[command(flatten)]
    common: Common,
    /// Connections to open.
    #[arg(long, default_value_t = 1000)]
    count: usize,
    /// Seconds to hold them open once all are connected.
    #[arg(long, default_value_t = 5.0)]
    hold: f64,
    /// New connections per second at most (0: no limit).
    #[arg(long, default_value_t = 0.0)]
    ramp: f64,
    /// Handshakes in progress at once at most. Far more than the broker accepts per
    /// scheduling round measures SYN retransmits (on loopback both ternd and mosquitto fell
    /// from ~10,000 to ~900 connections/s at 256), hence a modest default.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
}

/// Runs `tern bench conn`.
pub(crate) async fn run(args: ConnBenchArgs) -> Result<(), Failure> {
    if !(args.hold.is_finite() && args.hold >= 0.0 && args.ramp.is_finite() && args.ramp >= 0.0) {
        return Err(Failure::other(
            "--hold and --ramp must be non-negative numbers",
        ));
    }
    let common = args.common.clone();
    let addr = format!("{}:{}", common.host, common.port);
    let tag = format!("tc{}", std::process::id());
    let limit = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let bar = common
        .progress()
        .then(|| indicatif::ProgressBar::new(args.count as u64));
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for i in 0..args.count {
        if args.ramp > 0.0 {
            let due = start + Duration::from_secs_f64(i as f64 / args.ramp);
            tokio::time::sleep_until(due.into()).await;
        }
        let permit = limit
            .clone()
            .acquire_owned()
            .await
            .map_err(Failure::other)?;
        let (addr, id, common) = (addr.clone(), format!("{tag}-{i}"), common.clone());
        let (mut stop, done) = (stop_rx.clone(), done_tx.clone());
        tasks.spawn(async move {
            let begun = Instant::now();
            let connected = Wire::connect(
                &addr,
                common.version,
                &id,
                common.keep_alive,
                common.connect_timeout(),
            )
            .await;
            drop(permit);
            let mut wire = match connected {
                Ok(wire) => {
                    let _ = done.send(Ok((begun.elapsed(), Instant::now())));
                    wire
                }
                Err(e) => {
                    let _ = done.send(Err(e));
                    return;
                }
            };
            let mut ping = ping_interval(common.keep_alive);
            loop {
                tokio::select! {
                    r = wire.fill() => match r {
                        // PINGRESP, or anything else: read and dropped.
                        Ok(true) => while let Ok(Some(_)) = wire.decoded() {},
                        _ => return,
                    },
                    _ = ping.tick() => {
                        wire.push_ping();
                        if wire.flush().await.is_err() { return; }
                    }
                    _ = stop.changed() => break,
                }
            }
            wire.push_disconnect();
            let _ = wire.flush().await;
        });
        if let Some(bar) = &bar {
            bar.set_position(i as u64 + 1);
        }
    }
    drop(done_tx);
    let mut latency = histogram();
    let (mut connected, mut failed) = (0usize, 0usize);
    let mut last = start;
    let mut first_error = None;
    for _ in 0..args.count {
        match done_rx.recv().await {
            Some(Ok((took, at))) => {
                connected += 1;
                last = last.max(at);
                let _ = latency.record((took.as_micros() as u64).max(1));
            }
            Some(Err(e)) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
            None => break,
        }
    }
    let connect_s = last.duration_since(start).as_secs_f64();
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    tokio::time::sleep(Duration::from_secs_f64(args.hold)).await;
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    let connect_rate = if connect_s > 0.0 {
        connected as f64 / connect_s
    } else {
        0.0
    };
    let (fields, human) = percentiles(&latency);
    let mut json = serde_json::json!({
        "mode": "conn",
        "connections": args.count,
        "connected": connected,
        "failed": failed,
        "connect_rate": connect_rate,
        "elapsed_s": connect_s,
        "hold_s": args.hold,
        "sent": 0,
        "received": 0,
        "lost": 0,
        "msgs_per_s": 0.0,
    });
    for (key, value) in fields {
        json[key] = value.into();
    }
    if !common.quiet {
        eprintln!(
            "conn: {connected}/{} connected, {failed} failed, {connect_rate:.0} connections/s\n\
             handshake: {human}",
            args.count
        );
        if let Some(e) = &first_error {
            eprintln!("first failure: {e}");
        }
    }
    print_json(&json);
    if connected == 0 && args.count > 0 {
        return Err(Failure::other(first_error.unwrap_or_default()));
    }
    Ok(())
}
