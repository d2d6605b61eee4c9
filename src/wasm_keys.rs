//! Glue for keys once per Envoy: moves the bytes of [`crate::shared_keys`]
//! between this VM and proxy-wasm shared data (process-wide, across the
//! VMs of one plugin). Every rule is in `shared_keys`; this only reads,
//! compare-and-swaps and writes.

use std::collections::HashMap;

use proxy_wasm::hostcalls;

use crate::jwks::{IssuerId, RemoteKeys};
use crate::shared_keys::{self, Claim, Record};

/// Shared-data key of the VM sequence: each VM takes a distinct id once.
const VM_SEQ: &str = "mpass_guard/vm_seq";

/// This VM's view of the shared key state.
#[derive(Default)]
pub(crate) struct SharedKeys {
    /// Distinct per VM of this Envoy process (0 until taken).
    vm: u32,
    /// Per issuer: the record generation this VM last adopted or wrote.
    seen: HashMap<IssuerId, u64>,
}

fn read(key: &str) -> (Option<Vec<u8>>, Option<u32>) {
    hostcalls::get_shared_data(key).unwrap_or((None, None))
}

/// Writes `value` if the key still has `cas`; false when another VM moved
/// first (or the host refused).
fn swap(key: &str, value: &[u8], cas: Option<u32>) -> bool {
    hostcalls::set_shared_data(key, Some(value), cas).is_ok()
}

impl SharedKeys {
    fn vm_id(&mut self) -> u32 {
        if self.vm == 0 {
            for _ in 0..16 {
                let (cur, cas) = read(VM_SEQ);
                let next = cur
                    .and_then(|b| String::from_utf8(b).ok())
                    .and_then(|s| s.parse::<u32>().ok())
                    .unwrap_or(0)
                    .saturating_add(1);
                if swap(VM_SEQ, next.to_string().as_bytes(), cas) {
                    self.vm = next;
                    break;
                }
            }
        }
        self.vm
    }

    /// Whether this VM may start the fetch `remote.due()` just returned.
    /// A refused fetch stays "in flight" in `remote` and is asked again
    /// after twice the timeout, or ends when a new generation is adopted.
    pub(crate) fn may_fetch(&mut self, scope: &str, remote: &mut RemoteKeys, now: u64) -> bool {
        let me = self.vm_id();
        if me == 0 {
            // No shared data: fetch per VM, as before.
            return true;
        }
        let timeout = remote.policy.timeout_ms;
        let lease_key = shared_keys::key(scope, &remote.issuer, "lease");
        let (lease, lease_cas) = read(&lease_key);
        let claim = if remote.take_forced() {
            let kid_key = shared_keys::key(scope, &remote.issuer, "kid");
            let (budget, budget_cas) = read(&kid_key);
            match shared_keys::kid_budget(budget.as_deref(), now, remote.policy.refetch_interval_ms)
            {
                Some(v) if swap(&kid_key, &v, budget_cas) => {
                    shared_keys::claim_kid_refetch(lease.as_deref(), me, now, timeout)
                }
                // Spent by this or another VM within the interval.
                _ => Claim::Follow,
            }
        } else {
            shared_keys::claim_scheduled(lease.as_deref(), me, now, timeout)
        };
        match claim {
            Claim::Take(v) => swap(&lease_key, &v, lease_cas),
            Claim::Follow => false,
        }
    }

    /// After this VM's fetch cycle of `remote` ended: publishes a good key
    /// set document as the next generation (the record, then the small
    /// generation value the other VMs' ticks read), and leaves the lease
    /// quiet until this VM's next attempt (refresh or backoff retry).
    pub(crate) fn settled(
        &mut self,
        scope: &str,
        issuer: IssuerId,
        remote: &RemoteKeys,
        now: u64,
        good_document: Option<&[u8]>,
    ) {
        let me = self.vm_id();
        if me == 0 {
            return;
        }
        if let Some(doc) = good_document {
            let key = shared_keys::key(scope, &remote.issuer, "keys");
            for _ in 0..4 {
                let (cur, cas) = read(&key);
                let record = Record::next(cur.as_deref(), now, remote.userinfo_endpoint(), doc);
                if swap(&key, &record.encode(), cas) {
                    self.seen.insert(issuer, record.generation);
                    self.raise_generation(scope, &remote.issuer, record.generation);
                    break;
                }
            }
        }
        let lease_key = shared_keys::key(scope, &remote.issuer, "lease");
        let (lease, cas) = read(&lease_key);
        if let Some(v) = shared_keys::settle(lease.as_deref(), me, remote.next_fetch_at()) {
            let _ = swap(&lease_key, &v, cas);
        }
    }

    /// Raises the shared generation value to `published` (never lowers
    /// it: a VM that published later may have raised it further).
    fn raise_generation(&self, scope: &str, issuer: &str, published: u64) {
        let key = shared_keys::key(scope, issuer, "gen");
        for _ in 0..8 {
            let (cur, cas) = read(&key);
            match shared_keys::raise_generation(cur.as_deref(), published) {
                Some(v) if swap(&key, &v, cas) => return,
                Some(_) => continue, // another VM moved first: read again
                None => return,
            }
        }
    }

    /// On the tick: adopts a newer generation another VM published. The
    /// message of the adoption, when there was one (true: keys usable).
    /// Reads the few bytes of the generation value; the record (the whole
    /// document) only when the generation moved past what this VM has.
    pub(crate) fn poll(
        &mut self,
        scope: &str,
        issuer: IssuerId,
        remote: &mut RemoteKeys,
    ) -> Option<(bool, String)> {
        let seen = self.seen.get(&issuer).copied().unwrap_or(0);
        let (generation, _) = read(&shared_keys::key(scope, &remote.issuer, "gen"));
        if shared_keys::generation(generation.as_deref()) <= seen {
            return None;
        }
        let key = shared_keys::key(scope, &remote.issuer, "keys");
        let (bytes, _) = read(&key);
        if !shared_keys::is_newer(bytes.as_deref(), seen) {
            return None;
        }
        let record = Record::decode(bytes.as_deref()?)?;
        self.seen.insert(issuer, record.generation);
        let event = remote.adopt_shared(
            record.fetched_at_ms,
            record.userinfo_endpoint.as_deref(),
            &record.document,
        );
        Some((event.ok, event.message))
    }
}
