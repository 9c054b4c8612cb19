//! LLM allocations: reserve before an upstream call, settle after, against
//! a lease of the owner's balance held by this server.
//!
//! *Leases.* The store keeps each owner's unleased balance and, per server
//! ("holder"), a lease: a slice of that balance moved out of it by one
//! atomic store operation ([`ControlStore::lease_allocation`]). A server
//! reserves against its own lease in memory, so the steady state costs no
//! database round trip per request. It asks for more when a request would
//! not fit, and in the background when what is left of its lease falls
//! below a quarter of the slice it asks for. The ledger debits written
//! usage from the same lease. Every [`RENEW_EVERY`] the server renews its
//! leases, learns what the store says they hold (an operator who sets a
//! balance revokes the leases on it), and returns the unspent part of the leases of owners idle for
//! [`IDLE_RETURN`]; at shutdown it returns them all. A server that stops
//! renewing (it crashed, or cannot reach the database) stops spending its
//! lease at its expiry, and any server returns an expired lease to the
//! balance, so a crashed server's slice comes back within the lease lifetime ([`LEASE_TTL`] by default).
//! On one server with SQLite this is the same machinery with one holder.
//!
//! *What a request reserves.* What it is likely to cost (its estimated
//! input, its output limit up to `llm_integration_core::pricing::LIKELY_OUTPUT`
//! tokens per choice), capped by what is left; it is refused only when
//! what is left (its server's lease and what it can still lease) cannot pay
//! even its input. When a request ends it releases its reservation and
//! debits its real cost.
//!
//! *Bound on overspend.* Leases never exceed the balance (they are moved
//! out of it atomically), and reservations never exceed the lease, so the
//! owner's balance goes below zero only by what requests in flight consume
//! beyond their reservations: for a request that states an output limit,
//! at most `(limit − reserved output) × output price` plus the part of its
//! likely cost its reservation could not cover. With several servers the
//! bound is the same sum, over the requests in flight on all of them.
//! Lease expiry holds it too: a server's own clock stops it spending a
//! lease a sixth of its lifetime (5 s of the default 30 s) before the store's expiry, so a lease is never
//! spent after another server returned it (clocks in step within that
//! margin).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use llm_integration_core::seams::{ControlStore, LeaseRequest, StoreError};
use llm_integration_core::Owner;

use crate::store::unix_ms;

/// How long a lease lives unless renewed, by default (the server's
/// `allocation_lease_secs`).
pub const LEASE_TTL: Duration = Duration::from_secs(30);
/// An owner with no request for this long has the unspent part of its
/// lease returned, for the other servers.
pub const IDLE_RETURN: Duration = Duration::from_secs(10);
/// How often a server renews its leases and learns what the store says
/// they hold (an operator's change reaches it within this).
pub const RENEW_EVERY: Duration = Duration::from_secs(1);
/// The smallest slice a server asks for, in micro-dollars ($0.05).
const MIN_SLICE: i64 = 50_000;
/// A slice covers this many requests like the one that asked for it.
const SLICE_REQUESTS: i64 = 16;

#[derive(Debug)]
struct Account {
    /// What this server's lease holds, as far as it knows: granted, minus
    /// debits written, minus what it returned.
    lease: i64,
    /// Debits settled here but not yet written to the store.
    unwritten: i64,
    /// Reserved by requests in flight.
    reserved: i64,
    /// The lease may be spent until then (renewed by every lease and
    /// renewal); `None` before the first lease.
    valid_until: Option<Instant>,
    /// The slice last asked for.
    slice: i64,
    /// A lease is being taken in the background.
    leasing: bool,
    /// The lease must be returned and taken afresh before it is spent
    /// again (an operator changed the balance).
    stale: bool,
    last_used: Instant,
}

impl Account {
    fn new() -> Self {
        Account {
            lease: 0,
            unwritten: 0,
            reserved: 0,
            valid_until: None,
            slice: MIN_SLICE,
            leasing: false,
            stale: false,
            last_used: Instant::now(),
        }
    }

    fn usable(&self, now: Instant) -> bool {
        !self.stale && self.valid_until.is_some_and(|t| now < t)
    }

    /// What may still be reserved.
    fn available(&self, now: Instant) -> i64 {
        if self.usable(now) {
            self.lease - self.unwritten - self.reserved
        } else {
            0
        }
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

/// Reserves and settles allocations against this server's leases.
pub struct Allocator {
    store: Arc<dyn ControlStore>,
    default: i64,
    holder: String,
    /// How long a lease lives unless renewed.
    ttl: Duration,
    accounts: Mutex<HashMap<Owner, Account>>,
    /// Serialises this server's lease calls (one per owner at a time would
    /// do; one at a time is simpler and they are rare).
    leasing: tokio::sync::Mutex<()>,
    /// Bumped by every ledger write, so a lease answer read across a write
    /// is not mistaken for the truth.
    writes: AtomicU64,
}

impl Allocator {
    /// An allocator over `store`'s balances; owners never set have
    /// `default`. Its leases are held under a name of its own (host,
    /// process, random part) and live [`LEASE_TTL`] unless renewed.
    pub fn new(store: Arc<dyn ControlStore>, default: i64) -> Self {
        Self::with_lease_lifetime(store, default, LEASE_TTL)
    }

    /// Like [`Allocator::new`], with leases living `ttl` (at least 3 s; a
    /// server stops spending a lease a sixth of `ttl` before it expires).
    pub fn with_lease_lifetime(store: Arc<dyn ControlStore>, default: i64, ttl: Duration) -> Self {
        let mut random = [0u8; 6];
        let _ = getrandom::fill(&mut random);
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "server".into());
        let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
        Allocator {
            store,
            default,
            holder: format!("{host}:{}:{suffix}", std::process::id()),
            ttl: ttl.max(Duration::from_secs(3)),
            accounts: Mutex::new(HashMap::new()),
            leasing: tokio::sync::Mutex::new(()),
            writes: AtomicU64::new(0),
        }
    }

    /// How long after a lease or renewal this server may spend the lease.
    fn spendable(&self) -> Duration {
        self.ttl - self.ttl / 6
    }

    /// The default balance of an owner never set.
    pub fn default_balance(&self) -> i64 {
        self.default
    }

    /// The name this server's leases are held under.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Reserves for a request of `owner` what it is likely to cost
    /// (`likely`), capped by what is left; refuses it when what is left is
    /// less than `minimum` (its input) or nothing.
    ///
    /// Reserves from this server's lease without a store call when it
    /// covers the request; otherwise leases more first (a request that the
    /// lease would refuse waits for it, so a grant is never missed).
    ///
    /// Errors: the store's, when a lease was needed and it cannot be taken.
    pub async fn reserve(
        self: &Arc<Self>,
        owner: Owner,
        likely: u64,
        minimum: u64,
    ) -> Result<Result<Reservation, Exhausted>, StoreError> {
        let likely = i64::try_from(likely).unwrap_or(i64::MAX);
        let minimum = i64::try_from(minimum).unwrap_or(i64::MAX).min(likely);
        if let Some(reservation) = self.try_reserve(owner, likely, minimum, false)? {
            return Ok(Ok(reservation));
        }
        // Not enough here: lease what this request needs (and a slice).
        let unleased = self.lease(owner, likely, minimum).await?;
        match self.try_reserve(owner, likely, minimum, true)? {
            Some(reservation) => Ok(Ok(reservation)),
            None => {
                let now = Instant::now();
                let here = self
                    .accounts
                    .lock()
                    .map(|a| a.get(&owner).map_or(0, |x| x.available(now)))
                    .unwrap_or(0);
                Ok(Err(Exhausted {
                    available: here + unleased.max(0),
                    needed: minimum,
                }))
            }
        }
    }

    /// Reserves from the lease if it covers `minimum` (capping at
    /// `likely`); starts a background lease when what is left runs low.
    /// With `last_chance`, reserves whatever is available down to `minimum`.
    fn try_reserve(
        self: &Arc<Self>,
        owner: Owner,
        likely: i64,
        minimum: i64,
        last_chance: bool,
    ) -> Result<Option<Reservation>, StoreError> {
        let Ok(mut accounts) = self.accounts.lock() else {
            return Err(StoreError::Unavailable("allocation state poisoned".into()));
        };
        let now = Instant::now();
        let account = accounts.entry(owner).or_insert_with(Account::new);
        account.last_used = now;
        let available = account.available(now);
        // Before the last chance, a request that would be capped first
        // tries to lease what it is likely to cost.
        let enough = if last_chance {
            available > 0 && available >= minimum
        } else {
            available >= likely.max(1)
        };
        if !enough {
            return Ok(None);
        }
        let micros = likely.min(available);
        account.reserved += micros;
        let low = account.available(now) < account.slice / 4;
        let start = low && !account.leasing && account.usable(now);
        if start {
            account.leasing = true;
        }
        drop(accounts);
        if start {
            let this = self.clone();
            tokio::spawn(async move {
                if let Err(e) = this.lease(owner, 0, 0).await {
                    tracing::warn!(error = %e, "cannot top up the allocation lease; requests lease as they need");
                }
                if let Ok(mut a) = this.accounts.lock() {
                    if let Some(account) = a.get_mut(&owner) {
                        account.leasing = false;
                    }
                }
            });
        }
        Ok(Some(Reservation { owner, micros }))
    }

    /// Takes a lease slice for `owner` (enough for `likely`, at least
    /// `minimum`); returns what is left unleased.
    async fn lease(&self, owner: Owner, likely: i64, minimum: i64) -> Result<i64, StoreError> {
        let _one = self.leasing.lock().await;
        // A stale lease goes back whole before a fresh one is taken.
        let stale = self
            .accounts
            .lock()
            .map(|a| a.get(&owner).is_some_and(|x| x.stale))
            .unwrap_or(false);
        if stale {
            self.give_back(owner, true).await?;
        }
        let (want, need) = {
            let Ok(accounts) = self.accounts.lock() else {
                return Err(StoreError::Unavailable("allocation state poisoned".into()));
            };
            let now = Instant::now();
            let account = accounts.get(&owner);
            let available = account.map_or(0, |a| a.available(now));
            if likely > 0 && available >= likely {
                // Another request leased while this one waited its turn.
                return Ok(0);
            }
            // A slice covers many requests like this one, and grows with
            // what is in flight, so that a busy owner is not leased for
            // request by request.
            let in_flight = account.map_or(0, |a| a.reserved);
            // A request that cost more than it reserved leaves the lease in
            // debt: what is leased next covers the debt first, or the owner
            // would be refused while the balance still holds money.
            let debt = available.min(0).saturating_neg();
            let want = likely
                .saturating_mul(SLICE_REQUESTS)
                .saturating_add(in_flight.saturating_mul(2))
                .max(MIN_SLICE)
                .saturating_add(debt);
            (want, minimum.saturating_sub(available).max(0))
        };
        let now_wall = SystemTime::now();
        let request = LeaseRequest {
            want,
            need,
            expires_at_ms: unix_ms(now_wall + self.ttl),
            now_ms: unix_ms(now_wall),
        };
        let before = self.writes.load(Ordering::SeqCst);
        let asked_at = Instant::now();
        let answer = self
            .store
            .lease_allocation(owner, &self.holder, request, self.default)
            .await?;
        let Ok(mut accounts) = self.accounts.lock() else {
            return Err(StoreError::Unavailable("allocation state poisoned".into()));
        };
        let account = accounts.entry(owner).or_insert_with(Account::new);
        if self.writes.load(Ordering::SeqCst) == before {
            // The store's figure is the truth (it also tells when another
            // server returned this lease as expired).
            account.lease = answer.held;
        } else {
            account.lease += answer.granted;
        }
        account.valid_until = Some(asked_at + self.spendable());
        account.slice = want;
        Ok(answer.unleased)
    }

    /// Returns the unspent part of `owner`'s lease (all of it with `all`,
    /// else only when nothing is in flight).
    async fn give_back(&self, owner: Owner, all: bool) -> Result<(), StoreError> {
        let spare = {
            let Ok(accounts) = self.accounts.lock() else {
                return Ok(());
            };
            match accounts.get(&owner) {
                Some(a) if all || a.reserved == 0 => a.lease - a.unwritten - a.reserved,
                _ => 0,
            }
        };
        if spare <= 0 {
            if let Ok(mut accounts) = self.accounts.lock() {
                if let Some(a) = accounts.get_mut(&owner) {
                    if all {
                        a.lease = a.lease.min(a.unwritten + a.reserved);
                    }
                    a.stale = false;
                }
            }
            return Ok(());
        }
        let returned = self
            .store
            .return_allocation(owner, &self.holder, spare)
            .await?;
        if let Ok(mut accounts) = self.accounts.lock() {
            if let Some(a) = accounts.get_mut(&owner) {
                a.lease -= returned;
                if all {
                    // Whatever the store still held beyond what came back
                    // (nothing, if the lease was revoked) is not spendable.
                    a.lease = a.lease.min(a.unwritten + a.reserved);
                }
                a.stale = false;
            }
        }
        Ok(())
    }

    /// Renews this server's leases and returns those of idle owners (and
    /// other servers' expired ones to their balances), every
    /// [`RENEW_EVERY`] until `shutdown` (then call
    /// [`Allocator::release_all`] after the ledger's last write).
    pub async fn maintain(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut ticker = tokio::time::interval(RENEW_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = ticker.tick() => {}
            }
            self.renew().await;
        }
    }

    /// One maintenance round (see [`Allocator::maintain`]).
    pub async fn renew(&self) {
        let _one = self.leasing.lock().await;
        let now_wall = SystemTime::now();
        let asked_at = Instant::now();
        let before = self.writes.load(Ordering::SeqCst);
        match self
            .store
            .renew_allocation_leases(
                &self.holder,
                unix_ms(now_wall + self.ttl),
                unix_ms(now_wall),
            )
            .await
        {
            Ok(held) => {
                let held: HashMap<Owner, i64> = held.into_iter().collect();
                let exact = self.writes.load(Ordering::SeqCst) == before;
                if let Ok(mut accounts) = self.accounts.lock() {
                    for (owner, a) in accounts.iter_mut() {
                        if a.valid_until.is_some() {
                            a.valid_until = Some(asked_at + self.spendable());
                        }
                        // The store's figure is the truth: a lease revoked
                        // by an operator (or returned as expired) is gone.
                        if exact {
                            a.lease = held.get(owner).copied().unwrap_or(0);
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew allocation leases; they stop being spent at their expiry");
                return;
            }
        }
        let idle: Vec<Owner> = self
            .accounts
            .lock()
            .map(|a| {
                a.iter()
                    .filter(|(_, x)| x.reserved == 0 && x.last_used.elapsed() >= IDLE_RETURN)
                    .filter(|(_, x)| x.lease - x.unwritten > 0)
                    .map(|(o, _)| *o)
                    .collect()
            })
            .unwrap_or_default();
        for owner in idle {
            if let Err(e) = self.give_back(owner, false).await {
                tracing::warn!(error = %e, "cannot return an idle allocation lease; it expires instead");
            }
        }
    }

    /// Returns every lease (at shutdown, after the ledger's last write):
    /// what it holds unspent goes back to the balance, and its row is
    /// removed.
    pub async fn release_all(&self) {
        let _one = self.leasing.lock().await;
        let owners: Vec<Owner> = self
            .accounts
            .lock()
            .map(|a| a.keys().copied().collect())
            .unwrap_or_default();
        // Everything is written by now: each lease is settled whole (an
        // overspent one is paid by the balance) and its row removed.
        for owner in owners {
            match self
                .store
                .return_allocation(owner, &self.holder, i64::MAX)
                .await
            {
                Ok(returned) => {
                    if let Ok(mut accounts) = self.accounts.lock() {
                        if let Some(a) = accounts.get_mut(&owner) {
                            a.lease -= returned;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot return an allocation lease at shutdown; it expires instead");
                }
            }
        }
    }

    /// Releases `reservation` and debits `cost` (to be written by the ledger).
    pub fn settle(&self, reservation: Reservation, cost: u64) {
        if let Ok(mut accounts) = self.accounts.lock() {
            let account = accounts
                .entry(reservation.owner)
                .or_insert_with(Account::new);
            account.reserved -= reservation.micros;
            account.unwritten += i64::try_from(cost).unwrap_or(i64::MAX);
        }
    }

    /// The ledger wrote these debits to the store (from this server's
    /// leases).
    pub fn written(&self, debits: &[(Owner, u64)]) {
        self.writes.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut accounts) = self.accounts.lock() {
            for (owner, cost) in debits {
                let account = accounts.entry(*owner).or_insert_with(Account::new);
                let cost = i64::try_from(*cost).unwrap_or(i64::MAX);
                account.unwritten -= cost;
                account.lease -= cost;
            }
        }
    }

    /// Makes the next request of `owner` return this server's lease and
    /// lease afresh (after an operator changed the balance here).
    pub fn invalidate(&self, owner: Owner) {
        if let Ok(mut accounts) = self.accounts.lock() {
            if let Some(a) = accounts.get_mut(&owner) {
                a.stale = true;
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

    /// What this server's leases hold unspent, over all owners (for tests
    /// and metrics).
    pub fn leased_total(&self) -> i64 {
        self.accounts
            .lock()
            .map(|a| a.values().map(|x| x.lease - x.unwritten).sum())
            .unwrap_or(0)
    }
}
