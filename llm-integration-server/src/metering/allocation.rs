//! LLM allocations: reserve before an upstream call, settle after.
//!
//! The balance of an owner, as this process sees it, is the store's
//! balance, minus the debits not yet written, minus what in-flight
//! requests have reserved. A request reserves what it is likely to cost
//! (its estimated input, its output limit up to
//! `llm_integration_core::pricing::LIKELY_OUTPUT` tokens per choice),
//! capped by what is left; it is refused only when what is left cannot pay
//! even its input (nothing usable remains). When a request ends it
//! releases its reservation and debits its real cost.
//!
//! *Bound on overspend*: a request costs more than it reserved only by the
//! output it produces beyond its reserved output, by input beyond the
//! conservative estimate, or when its reservation was capped by what was
//! left; the balance can go below zero by at most what the requests in
//! flight at once consume beyond their reservations, which for a request
//! that states an output limit is at most `(limit − reserved output) ×
//! output price` plus the part of its likely cost the balance could not
//! cover. The balance is re-read from the store when more than a second
//! old, off the request path (a request it would refuse waits for the
//! read), to see operator grants and changes made by other processes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use llm_integration_core::seams::{ControlStore, StoreError};
use llm_integration_core::Owner;

/// How long a balance read from the store is trusted.
const REFRESH: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct Account {
    /// The store's balance when last read.
    stored: i64,
    /// Debits settled here but not yet written to the store.
    unwritten: i64,
    /// Reserved by requests in flight.
    reserved: i64,
    read_at: Option<Instant>,
    /// A read of the stored balance is under way in the background.
    refreshing: bool,
}

/// How recent an owner's balance is.
enum Freshness {
    /// Read within [`REFRESH`].
    Fresh,
    /// Read before.
    Stale,
    /// Never read.
    Unknown,
}

impl Account {
    fn available(&self) -> i64 {
        self.stored - self.unwritten - self.reserved
    }
}

/// A held reservation; settle it with [`Allocator::settle`].
#[derive(Debug)]
pub struct Reservation {
    owner: Owner,
    micros: i64,
}

/// The allocation was not enough.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exhausted {
    /// What was left, in micro-dollars (may be negative).
    pub available: i64,
    /// What the request needed at the least (its input), in micro-dollars.
    pub needed: i64,
}

/// Reserves and settles allocations.
pub struct Allocator {
    store: Arc<dyn ControlStore>,
    default: i64,
    accounts: Mutex<HashMap<Owner, Account>>,
    /// Bumped by every ledger write, so a balance read across a write is retried.
    writes: AtomicU64,
}

impl Allocator {
    /// An allocator over `store`'s balances; owners never set have `default`.
    pub fn new(store: Arc<dyn ControlStore>, default: i64) -> Self {
        Allocator {
            store,
            default,
            accounts: Mutex::new(HashMap::new()),
            writes: AtomicU64::new(0),
        }
    }

    /// The default balance of an owner never set.
    pub fn default_balance(&self) -> i64 {
        self.default
    }

    fn freshness(&self, owner: Owner) -> Freshness {
        let read_at = self
            .accounts
            .lock()
            .ok()
            .and_then(|a| a.get(&owner).and_then(|x| x.read_at));
        match read_at {
            Some(t) if t.elapsed() < REFRESH => Freshness::Fresh,
            Some(_) => Freshness::Stale,
            None => Freshness::Unknown,
        }
    }

    /// Re-reads `owner`'s stored balance off the request path (one read at
    /// a time per owner).
    fn refresh_in_background(self: &Arc<Self>, owner: Owner) {
        let start = self.accounts.lock().is_ok_and(|mut a| {
            let account = a.entry(owner).or_default();
            !std::mem::replace(&mut account.refreshing, true)
        });
        if !start {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.refresh(owner).await {
                tracing::warn!(error = %e, "allocation unreadable; using the last balance read");
            }
            if let Ok(mut a) = this.accounts.lock() {
                if let Some(account) = a.get_mut(&owner) {
                    account.refreshing = false;
                }
            }
        });
    }

    /// Reads `owner`'s stored balance.
    async fn refresh(&self, owner: Owner) -> Result<(), StoreError> {
        let known = self
            .accounts
            .lock()
            .map(|a| a.get(&owner).is_some_and(|x| x.read_at.is_some()))
            .unwrap_or(false);
        let mut last = None;
        for _ in 0..3 {
            let before = self.writes.load(Ordering::SeqCst);
            match self.store.allocation(owner).await {
                Ok(stored) => {
                    last = Some(stored.unwrap_or(self.default));
                    if self.writes.load(Ordering::SeqCst) == before {
                        break; // no ledger write landed meanwhile
                    }
                }
                // The store is unavailable: keep serving on the last balance read.
                Err(e) if known => {
                    tracing::warn!(error = %e, "allocation unreadable; using the last balance read");
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        if let (Some(stored), Ok(mut accounts)) = (last, self.accounts.lock()) {
            let account = accounts.entry(owner).or_default();
            account.stored = stored;
            account.read_at = Some(Instant::now());
        }
        Ok(())
    }

    /// Reserves for a request of `owner` what it is likely to cost
    /// (`likely`), capped by what is left; refuses it when what is left is
    /// less than `minimum` (its input) or nothing.
    ///
    /// The balance is read from the store the first time, and re-read off
    /// the request path when more than a second old; a request that the
    /// older balance would refuse waits for a fresh read first, so a grant
    /// is never missed.
    pub async fn reserve(
        self: &Arc<Self>,
        owner: Owner,
        likely: u64,
        minimum: u64,
    ) -> Result<Result<Reservation, Exhausted>, StoreError> {
        let likely = i64::try_from(likely).unwrap_or(i64::MAX);
        let minimum = i64::try_from(minimum).unwrap_or(i64::MAX).min(likely);
        match self.freshness(owner) {
            Freshness::Fresh => self.try_reserve(owner, likely, minimum),
            Freshness::Unknown => {
                self.refresh(owner).await?;
                self.try_reserve(owner, likely, minimum)
            }
            Freshness::Stale => match self.try_reserve(owner, likely, minimum)? {
                Ok(reservation) => {
                    self.refresh_in_background(owner);
                    Ok(Ok(reservation))
                }
                Err(_) => {
                    self.refresh(owner).await?;
                    self.try_reserve(owner, likely, minimum)
                }
            },
        }
    }

    fn try_reserve(
        &self,
        owner: Owner,
        likely: i64,
        minimum: i64,
    ) -> Result<Result<Reservation, Exhausted>, StoreError> {
        let Ok(mut accounts) = self.accounts.lock() else {
            return Err(StoreError::Unavailable("allocation state poisoned".into()));
        };
        let account = accounts.entry(owner).or_default();
        let available = account.available();
        if available <= 0 || available < minimum {
            return Ok(Err(Exhausted {
                available,
                needed: minimum,
            }));
        }
        let micros = likely.min(available);
        account.reserved += micros;
        Ok(Ok(Reservation { owner, micros }))
    }

    /// Releases `reservation` and debits `cost` (to be written by the ledger).
    pub fn settle(&self, reservation: Reservation, cost: u64) {
        if let Ok(mut accounts) = self.accounts.lock() {
            let account = accounts.entry(reservation.owner).or_default();
            account.reserved -= reservation.micros;
            account.unwritten += i64::try_from(cost).unwrap_or(i64::MAX);
        }
    }

    /// The ledger wrote these debits to the store.
    pub fn written(&self, debits: &[(Owner, u64)]) {
        self.writes.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut accounts) = self.accounts.lock() {
            for (owner, cost) in debits {
                let account = accounts.entry(*owner).or_default();
                let cost = i64::try_from(*cost).unwrap_or(i64::MAX);
                account.unwritten -= cost;
                account.stored -= cost;
            }
        }
    }

    /// Forgets the stored balance of `owner` (after an operator change).
    pub fn invalidate(&self, owner: Owner) {
        if let Ok(mut accounts) = self.accounts.lock() {
            if let Some(a) = accounts.get_mut(&owner) {
                a.read_at = None;
            }
        }
    }

    /// Debits settled but not yet written to the store, over all owners
    /// (for tests and metrics).
    pub fn unwritten_total(&self) -> i64 {
        self.accounts
            .lock()
            .map(|a| a.values().map(|x| x.unwritten).sum())
            .unwrap_or(0)
    }

    /// Reserved by requests in flight, over all owners (for tests and metrics).
    pub fn reserved_total(&self) -> i64 {
        self.accounts
            .lock()
            .map(|a| a.values().map(|x| x.reserved).sum())
            .unwrap_or(0)
    }
}
