//! The writer thread: group commit of storage operations.
//!
//! Operations are numbered in the order they are sent (the number is the caller's *ticket*).
//! The thread takes the first waiting operation, gathers more for up to the group window or
//! the batch limit, commits them in one transaction, then publishes the number of the last
//! committed operation; a connection that withholds an acknowledgement waits until that
//! number reaches its ticket.

use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::watch;

use super::{Storage, StorageOp};

/// Where the writer stands, as connections see it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Committed {
    /// Every operation up to this ticket was handled.
    pub(crate) upto: u64,
    /// A commit failed (twice): operations were lost, and from then on the acknowledgements
    /// that wait for the store are refused.
    pub(crate) broken: bool,
}

#[derive(Debug)]
struct Queue {
    tx: Option<Sender<StorageOp>>,
    sent: u64,
}

/// The broker's side of the writer thread.
#[derive(Debug)]
pub(crate) struct Persistence {
    queue: Mutex<Queue>,
    committed: watch::Receiver<Committed>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Persistence {
    /// Starts the writer thread on `storage`.
    pub(crate) fn start(
        storage: Arc<dyn Storage>,
        window: Duration,
        max_batch: usize,
    ) -> std::io::Result<Arc<Persistence>> {
        let (tx, rx) = mpsc::channel();
        let (done_tx, done_rx) = watch::channel(Committed::default());
        let thread = std::thread::Builder::new()
            .name("tern-store".to_owned())
            .spawn(move || run(&*storage, rx, done_tx, window, max_batch.max(1)))?;
        Ok(Arc::new(Persistence {
            queue: Mutex::new(Queue {
                tx: Some(tx),
                sent: 0,
            }),
            committed: done_rx,
            thread: Mutex::new(Some(thread)),
        }))
    }

    /// Sends an operation; returns its ticket (0 if the writer stopped).
    pub(crate) fn send(&self, op: StorageOp) -> u64 {
        let mut queue = self.queue.lock();
        let Some(tx) = &queue.tx else { return 0 };
        if tx.send(op).is_err() {
            return 0;
        }
        queue.sent += 1;
        queue.sent
    }

    /// The ticket of the last operation sent.
    pub(crate) fn sent(&self) -> u64 {
        self.queue.lock().sent
    }

    /// Where the writer stands now.
    pub(crate) fn committed(&self) -> Committed {
        *self.committed.borrow()
    }

    /// A receiver to wait on.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Committed> {
        self.committed.clone()
    }

    /// Waits until every operation sent so far is committed (or failed).
    pub(crate) async fn flush(&self) {
        let target = self.sent();
        let mut rx = self.subscribe();
        let _ = rx.wait_for(|c| c.upto >= target).await;
    }

    /// Stops the writer after what was sent, and waits for it.
    pub(crate) fn stop(&self) {
        self.queue.lock().tx = None;
        if let Some(thread) = self.thread.lock().take() {
            let _ = thread.join();
        }
    }
}

fn run(
    storage: &dyn Storage,
    rx: Receiver<StorageOp>,
    done: watch::Sender<Committed>,
    window: Duration,
    max_batch: usize,
) {
    let mut batch = Vec::with_capacity(max_batch.min(4096));
    let mut upto = 0u64;
    let mut broken = false;
    loop {
        // Wait for the first operation of a batch.
        match rx.recv() {
            Ok(op) => batch.push(op),
            Err(_) => return,
        }
        let deadline = Instant::now() + window;
        // Gather: what is already waiting, then what arrives within the window.
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(op) => {
                    batch.push(op);
                    continue;
                }
                Err(mpsc::TryRecvError::Disconnected) => break,
                Err(mpsc::TryRecvError::Empty) => {}
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            match rx.recv_timeout(deadline - now) {
                Ok(op) => batch.push(op),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        let n = batch.len() as u64;
        let mut result = storage.commit(&batch);
        if let Err(e) = &result {
            tracing::error!("storage commit failed, retrying once: {e}");
            result = storage.commit(&batch);
        }
        upto += n;
        if let Err(e) = result {
            tracing::error!(
                "storage commit failed: {} operations lost: {e}",
                batch.len()
            );
            broken = true;
        }
        batch.clear();
        done.send_replace(Committed { upto, broken });
    }
}
