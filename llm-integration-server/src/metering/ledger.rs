//! The usage ledger: every proxied request's record, written off the hot
//! path in batches, and never dropped.
//!
//! `record` only queues (an unbounded channel: a record is a few hundred
//! bytes and the queue drains every 100 ms). The writer takes up to 512
//! records at a time, writes them and their debits in one transaction, and
//! retries a failed write until it lands. [`Ledger::close`] (graceful
//! shutdown) flushes everything queued. A crash loses at most the records
//! of the last 100 ms and those of requests still in flight.

use std::sync::Arc;
use std::time::Duration;

use llm_integration_core::seams::{ControlStore, UsageRecord, UsageSink};
use llm_integration_core::{Owner, SourceKind};
use tokio::sync::mpsc;

use super::allocation::Allocator;

enum Message {
    Record(Box<UsageRecord>),
    /// Write what is queued now, then answer.
    Flush(tokio::sync::oneshot::Sender<()>),
    Close,
}

/// The sending side of the ledger.
#[derive(Clone)]
pub struct Ledger {
    tx: mpsc::UnboundedSender<Message>,
}

/// The writer task; await it after [`Ledger::close`].
pub struct LedgerWriter {
    task: tokio::task::JoinHandle<()>,
}

impl LedgerWriter {
    /// Waits until everything queued before `close` is written.
    pub async fn finished(self) {
        let _ = self.task.await;
    }
}

impl Ledger {
    /// Starts the writer.
    pub fn start(
        store: Arc<dyn ControlStore>,
        allocator: Arc<Allocator>,
    ) -> (Ledger, LedgerWriter) {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(write_loop(store, allocator, rx));
        (Ledger { tx }, LedgerWriter { task })
    }

    /// Waits until every record queued before this call is written, so a
    /// usage report read afterwards counts every finished request. Returns
    /// at once if the writer has stopped.
    pub async fn flush(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.tx.send(Message::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Asks the writer to write everything queued so far, then stop.
    pub fn close(&self) {
        let _ = self.tx.send(Message::Close);
    }
}

impl UsageSink for Ledger {
    fn record(&self, record: UsageRecord) {
        if self.tx.send(Message::Record(Box::new(record))).is_err() {
            tracing::error!("usage record after the ledger closed; it is lost");
        }
    }
}

async fn write_loop(
    store: Arc<dyn ControlStore>,
    allocator: Arc<Allocator>,
    mut rx: mpsc::UnboundedReceiver<Message>,
) {
    let mut closing = false;
    loop {
        let mut batch: Vec<UsageRecord> = Vec::new();
        let mut waiting: Vec<tokio::sync::oneshot::Sender<()>> = Vec::new();
        if !closing {
            match rx.recv().await {
                Some(Message::Record(r)) => batch.push(*r),
                Some(Message::Flush(done)) => waiting.push(done),
                Some(Message::Close) | None => closing = true,
            }
            if !closing && waiting.is_empty() {
                // Gather what arrives in the next 100 ms, up to 512 records,
                // unless someone waits for the write.
                let deadline = tokio::time::Instant::now() + Duration::from_millis(100);
                while batch.len() < 512 {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(Message::Record(r))) => batch.push(*r),
                        Ok(Some(Message::Flush(done))) => {
                            waiting.push(done);
                            break;
                        }
                        Ok(Some(Message::Close)) | Ok(None) => {
                            closing = true;
                            break;
                        }
                        Err(_) => break,
                    }
                }
            }
        }
        if closing {
            while batch.len() < 4096 {
                match rx.try_recv() {
                    Ok(Message::Record(r)) => batch.push(*r),
                    Ok(Message::Flush(done)) => waiting.push(done),
                    Ok(Message::Close) => {}
                    Err(_) => break,
                }
            }
        }
        if !batch.is_empty() {
            write(&store, &allocator, &batch).await;
        }
        for done in waiting {
            let _ = done.send(());
        }
        if closing && rx.is_empty() {
            return;
        }
    }
}

async fn write(store: &Arc<dyn ControlStore>, allocator: &Allocator, batch: &[UsageRecord]) {
    let mut delay = Duration::from_millis(50);
    loop {
        match store
            .record_usage(batch, allocator.default_balance(), allocator.holder())
            .await
        {
            Ok(()) => {
                let debits: Vec<(Owner, u64)> = batch
                    .iter()
                    .filter(|r| r.source == SourceKind::Gateway && r.cost_micros > 0)
                    .map(|r| (r.owner, r.cost_micros))
                    .collect();
                allocator.written(&debits);
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, records = batch.len(), "cannot write usage records; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}
