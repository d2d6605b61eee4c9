//! Keys once per Envoy: the rules by which the Wasm VMs of one Envoy process
//! share one issuer's key fetches through proxy-wasm shared data (issue 16).
//! Pure: the glue reads and writes the bytes (`get_shared_data` /
//! `set_shared_data` with the CAS token it read) and passes the clock in.
//!
//! Per issuer, two shared values:
//! - the **lease** (`<issuer>/lease`): which VM may fetch, and until when no
//!   other VM may. `Fetching` while a fetch is under way (it expires after
//!   the fetch timeout plus a margin, so a VM that dies mid-fetch does not
//!   stop the others for long); `Quiet` after a fetch, until the next
//!   refresh or, after a failure, until the backoff's next attempt, so the
//!   backoff is the process's, not each VM's;
//! - the **record** (`<issuer>/keys`): the raw key-set document of the last
//!   good fetch, its fetch time and a generation that grows by one per good
//!   fetch. Every VM parses a document once per generation.
//!
//! Beside the record, its **generation** (`<issuer>/gen`, ASCII decimal)
//! on its own: a VM's tick reads these few bytes to learn whether there is
//! anything new, and copies the record (the whole key-set document) only
//! when there is. The fetching VM writes the record first and then raises
//! the generation, never lowers it, so a VM that sees generation `n` finds
//! a record of generation `n` or newer.
//!
//! A third value, the **kid budget** (`<issuer>/kid`), holds the time of the
//! last unknown-`kid` refetch of the process, so the rate limit is per Envoy.
//!
//! Every rule is a function from what a VM read to what it should write; a
//! lost compare-and-swap means another VM moved first, and the loser follows.

/// Who holds an issuer's fetch lease, and until when (ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// `owner` is fetching; others wait for the next generation.
    Fetching { owner: u32, until_ms: u64 },
    /// Nobody fetches before `until_ms` except `owner` (its refresh or retry).
    Quiet { owner: u32, until_ms: u64 },
}

impl Lease {
    /// The shared-data bytes: `F|Q <owner> <until>` in ASCII.
    pub fn encode(self) -> Vec<u8> {
        let (tag, owner, until) = match self {
            Lease::Fetching { owner, until_ms } => ('F', owner, until_ms),
            Lease::Quiet { owner, until_ms } => ('Q', owner, until_ms),
        };
        format!("{tag} {owner} {until}").into_bytes()
    }

    /// Reads bytes written by [`Lease::encode`]; `None` for anything else
    /// (treated as no lease: a garbled value must not stop every fetch).
    pub fn decode(bytes: &[u8]) -> Option<Lease> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut parts = text.split(' ');
        let tag = parts.next()?;
        let owner = parts.next()?.parse().ok()?;
        let until_ms = parts.next()?.parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        match tag {
            "F" => Some(Lease::Fetching { owner, until_ms }),
            "Q" => Some(Lease::Quiet { owner, until_ms }),
            _ => None,
        }
    }

    fn owner(self) -> u32 {
        match self {
            Lease::Fetching { owner, .. } | Lease::Quiet { owner, .. } => owner,
        }
    }

    fn until(self) -> u64 {
        match self {
            Lease::Fetching { until_ms, .. } | Lease::Quiet { until_ms, .. } => until_ms,
        }
    }
}

/// What a VM whose own schedule says "fetch now" should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Write these lease bytes with the CAS token read; on success, fetch.
    Take(Vec<u8>),
    /// Another VM holds the lease: do not fetch, wait for a new generation.
    Follow,
}

/// Extra time a `Fetching` lease outlives the fetch timeout, so a slow but
/// live fetcher is not overtaken by a second fetch.
pub const LEASE_MARGIN_MS: u64 = 1_000;

/// The lease rule for a scheduled fetch (first fetch, refresh, retry): take
/// the lease when there is none, it expired (its holder died or is late),
/// or it is this VM's own (its refresh or retry, or the key set fetch that
/// follows its own discovery: a VM never runs two fetches of one issuer at
/// once, `RemoteKeys` sees to that); follow a live lease of another VM.
pub fn claim_scheduled(current: Option<&[u8]>, me: u32, now_ms: u64, timeout_ms: u64) -> Claim {
    let take = Claim::Take(fetching(me, now_ms, timeout_ms));
    match current.and_then(Lease::decode) {
        None => take,
        Some(lease) if lease.until() <= now_ms => take,
        Some(lease) if lease.owner() == me => take,
        Some(_) => Claim::Follow,
    }
}

/// The lease rule for an unknown-`kid` refetch this VM won the process's
/// budget for ([`kid_budget`]): a fetch under way (any VM's live `Fetching`
/// lease) is joined; a `Quiet` lease is overridden, since the refetch exists
/// precisely to fetch before the next refresh.
pub fn claim_kid_refetch(current: Option<&[u8]>, me: u32, now_ms: u64, timeout_ms: u64) -> Claim {
    match current.and_then(Lease::decode) {
        Some(Lease::Fetching { until_ms, .. }) if until_ms > now_ms => Claim::Follow,
        _ => Claim::Take(fetching(me, now_ms, timeout_ms)),
    }
}

fn fetching(me: u32, now_ms: u64, timeout_ms: u64) -> Vec<u8> {
    Lease::Fetching {
        owner: me,
        until_ms: now_ms
            .saturating_add(timeout_ms)
            .saturating_add(LEASE_MARGIN_MS),
    }
    .encode()
}

/// The lease the fetching VM writes when its fetch cycle ends: quiet until
/// its own next attempt (`next_fetch_at_ms`: the refresh after a success,
/// the backoff's retry after a failure). `None` when the lease is no longer
/// this VM's (it expired and another took it): leave it alone.
pub fn settle(current: Option<&[u8]>, me: u32, next_fetch_at_ms: u64) -> Option<Vec<u8>> {
    match current.and_then(Lease::decode) {
        Some(lease) if lease.owner() == me => Some(
            Lease::Quiet {
                owner: me,
                until_ms: next_fetch_at_ms,
            }
            .encode(),
        ),
        _ => None,
    }
}

/// The last good key-set document of the process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Grows by one per good fetch; 0 is never written.
    pub generation: u64,
    /// When the document was fetched (ms, the host clock): `max_stale` and
    /// the refresh schedule count from here in every VM.
    pub fetched_at_ms: u64,
    /// The discovery document's `userinfo_endpoint` the fetching VM knew,
    /// as written there: a VM that adopts the key set never ran discovery
    /// itself, and its userinfo calls need it (checked where it is used).
    pub userinfo_endpoint: Option<String>,
    /// The raw JWKS, as received (already within `max_response_bytes`).
    pub document: Vec<u8>,
}

/// Bytes of the record header: generation and fetch time, big-endian.
const RECORD_HEADER: usize = 16;

/// Bytes of the userinfo endpoint's length (big-endian; 0: none) that
/// follow the header.
const ENDPOINT_LEN: usize = 4;

impl Record {
    /// The record after a good fetch of `document`, following `current`.
    pub fn next(
        current: Option<&[u8]>,
        fetched_at_ms: u64,
        userinfo_endpoint: Option<&str>,
        document: &[u8],
    ) -> Record {
        let generation = current
            .and_then(Record::decode)
            .map_or(0, |r| r.generation)
            .saturating_add(1);
        Record {
            generation,
            fetched_at_ms,
            userinfo_endpoint: userinfo_endpoint
                .filter(|e| !e.is_empty() && u32::try_from(e.len()).is_ok())
                .map(str::to_owned),
            document: document.to_vec(),
        }
    }

    /// The shared-data bytes: generation, fetch time, document.
    pub fn encode(&self) -> Vec<u8> {
        let endpoint = self.userinfo_endpoint.as_deref().unwrap_or("").as_bytes();
        let mut out =
            Vec::with_capacity(RECORD_HEADER + ENDPOINT_LEN + endpoint.len() + self.document.len());
        out.extend_from_slice(&self.generation.to_be_bytes());
        out.extend_from_slice(&self.fetched_at_ms.to_be_bytes());
        // `next` keeps only endpoints whose length fits.
        let len = u32::try_from(endpoint.len()).unwrap_or(0);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(endpoint.get(..len as usize).unwrap_or_default());
        out.extend_from_slice(&self.document);
        out
    }

    /// Reads bytes written by [`Record::encode`].
    pub fn decode(bytes: &[u8]) -> Option<Record> {
        let (generation, fetched_at_ms) = Record::header(bytes)?;
        let len_bytes = bytes.get(RECORD_HEADER..RECORD_HEADER + ENDPOINT_LEN)?;
        let len = usize::try_from(u32::from_be_bytes(len_bytes.try_into().ok()?)).ok()?;
        let start = RECORD_HEADER + ENDPOINT_LEN;
        let end = start.checked_add(len)?;
        let endpoint = std::str::from_utf8(bytes.get(start..end)?).ok()?;
        Some(Record {
            generation,
            fetched_at_ms,
            userinfo_endpoint: (!endpoint.is_empty()).then(|| endpoint.to_owned()),
            document: bytes.get(end..)?.to_vec(),
        })
    }

    /// The record's generation and fetch time, without copying the document:
    /// what a VM's tick reads to learn whether there is anything new.
    pub fn header(bytes: &[u8]) -> Option<(u64, u64)> {
        let generation = u64::from_be_bytes(bytes.get(0..8)?.try_into().ok()?);
        let fetched_at = u64::from_be_bytes(bytes.get(8..RECORD_HEADER)?.try_into().ok()?);
        (generation > 0).then_some((generation, fetched_at))
    }
}

/// True when a VM that last adopted generation `seen` (0: none) should adopt
/// the shared record `bytes`: only a newer generation, so each document is
/// parsed once per VM per generation.
pub fn is_newer(bytes: Option<&[u8]>, seen: u64) -> bool {
    bytes
        .and_then(Record::header)
        .is_some_and(|(generation, _)| generation > seen)
}

/// The generation stored under `<issuer>/gen` (0: none, or not a number).
pub fn generation(bytes: Option<&[u8]>) -> u64 {
    bytes
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0)
}

/// The bytes to write (with the CAS token read) under `<issuer>/gen` after
/// publishing the record of `published`; `None` when the stored generation
/// is already that or newer (another VM published after this one): the
/// generation only grows.
pub fn raise_generation(current: Option<&[u8]>, published: u64) -> Option<Vec<u8>> {
    (published > generation(current)).then(|| published.to_string().into_bytes())
}

/// The process-wide unknown-`kid` budget: `Some(bytes)` to write (with the
/// CAS token read) when no refetch happened within `interval_ms`; winning
/// that write is this VM's one refetch. `None`: the budget is spent.
pub fn kid_budget(current: Option<&[u8]>, now_ms: u64, interval_ms: u64) -> Option<Vec<u8>> {
    let last = current
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|s| s.parse::<u64>().ok());
    match last {
        Some(at) if now_ms < at.saturating_add(interval_ms) && now_ms >= at => None,
        _ => Some(now_ms.to_string().into_bytes()),
    }
}

/// The shared-data key of one of an issuer's values (`lease`, `keys`,
/// `gen`, `kid`). The configuration id keeps two plugin configurations with the
/// same issuer apart (they may differ in policy).
pub fn key(config_id: &str, issuer: &str, value: &str) -> String {
    format!("mpass_guard/{config_id}/{issuer}/{value}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: u32 = 1;
    const B: u32 = 2;
    const T: u64 = 5_000;

    fn take(c: Claim) -> Vec<u8> {
        match c {
            Claim::Take(v) => v,
            Claim::Follow => panic!("expected Take"),
        }
    }

    #[test]
    fn the_first_vm_takes_the_lease_and_the_second_follows() {
        let lease = take(claim_scheduled(None, A, 100, T));
        assert_eq!(
            Lease::decode(&lease),
            Some(Lease::Fetching {
                owner: A,
                until_ms: 100 + T + LEASE_MARGIN_MS
            })
        );
        assert_eq!(claim_scheduled(Some(&lease), B, 200, T), Claim::Follow);
        // Its own lease (the key set fetch after its own discovery): renewed.
        assert!(matches!(
            claim_scheduled(Some(&lease), A, 200, T),
            Claim::Take(_)
        ));
    }

    #[test]
    fn a_lease_whose_fetcher_died_expires_and_another_vm_takes_it() {
        let lease = take(claim_scheduled(None, A, 0, T));
        let expiry = T + LEASE_MARGIN_MS;
        assert_eq!(
            claim_scheduled(Some(&lease), B, expiry - 1, T),
            Claim::Follow
        );
        let taken = take(claim_scheduled(Some(&lease), B, expiry, T));
        assert!(matches!(
            Lease::decode(&taken),
            Some(Lease::Fetching { owner: B, .. })
        ));
    }

    #[test]
    fn after_a_fetch_only_the_fetcher_refreshes_until_its_next_attempt() {
        let lease = take(claim_scheduled(None, A, 0, T));
        let quiet = settle(Some(&lease), A, 600_000).unwrap();
        // Another VM whose own schedule fired early follows.
        assert_eq!(claim_scheduled(Some(&quiet), B, 599_999, T), Claim::Follow);
        // The fetcher itself takes its refresh or retry at once.
        assert!(matches!(
            claim_scheduled(Some(&quiet), A, 1_000, T),
            Claim::Take(_)
        ));
        // Past the next attempt, anyone may (the fetcher may be gone).
        assert!(matches!(
            claim_scheduled(Some(&quiet), B, 600_000, T),
            Claim::Take(_)
        ));
    }

    #[test]
    fn a_failure_backs_off_the_whole_process_not_just_the_fetcher() {
        let lease = take(claim_scheduled(None, A, 0, T));
        // The fetch failed; the fetcher's backoff says retry at 1000.
        let quiet = settle(Some(&lease), A, 1_000).unwrap();
        for now in [1, 500, 999] {
            assert_eq!(claim_scheduled(Some(&quiet), B, now, T), Claim::Follow);
        }
    }

    #[test]
    fn a_vm_that_lost_its_lease_does_not_overwrite_the_new_holder() {
        let a = take(claim_scheduled(None, A, 0, T));
        let b = take(claim_scheduled(Some(&a), B, T + LEASE_MARGIN_MS, T));
        assert_eq!(settle(Some(&b), A, 600_000), None);
        assert!(settle(Some(&b), B, 600_000).is_some());
    }

    #[test]
    fn a_garbled_lease_never_stops_fetching() {
        for junk in [
            &b""[..],
            b"F",
            b"F 1",
            b"X 1 2",
            b"F one 2",
            b"F 1 2 3",
            b"\xff",
        ] {
            assert_eq!(Lease::decode(junk), None, "{junk:?}");
            assert!(matches!(
                claim_scheduled(Some(junk), B, 0, T),
                Claim::Take(_)
            ));
        }
    }

    #[test]
    fn an_unknown_kid_refetch_joins_a_fetch_under_way_and_overrides_a_quiet_lease() {
        let fetching = take(claim_scheduled(None, A, 0, T));
        assert_eq!(claim_kid_refetch(Some(&fetching), B, 10, T), Claim::Follow);
        let quiet = settle(Some(&fetching), A, 600_000).unwrap();
        let taken = take(claim_kid_refetch(Some(&quiet), B, 20, T));
        assert!(matches!(
            Lease::decode(&taken),
            Some(Lease::Fetching { owner: B, .. })
        ));
        assert!(matches!(claim_kid_refetch(None, B, 20, T), Claim::Take(_)));
    }

    #[test]
    fn the_kid_budget_allows_one_refetch_per_interval_for_the_process() {
        let first = kid_budget(None, 1_000, 30_000).unwrap();
        // Any VM, within the interval: spent.
        assert_eq!(kid_budget(Some(&first), 1_001, 30_000), None);
        assert_eq!(kid_budget(Some(&first), 30_999, 30_000), None);
        let second = kid_budget(Some(&first), 31_000, 30_000).unwrap();
        assert_eq!(second, b"31000");
        // A clock behind the stored time (another VM's later read) or a
        // garbled value does not lock the budget forever.
        assert!(kid_budget(Some(&second), 10, 30_000).is_some());
        assert!(kid_budget(Some(b"x"), 10, 30_000).is_some());
    }

    #[test]
    fn every_good_fetch_makes_a_new_generation_and_each_vm_adopts_it_once() {
        let r1 = Record::next(None, 100, None, b"{\"keys\":[]}");
        assert_eq!(r1.generation, 1);
        let b1 = r1.encode();
        assert_eq!(Record::decode(&b1), Some(r1.clone()));
        assert_eq!(Record::header(&b1), Some((1, 100)));
        assert!(is_newer(Some(&b1), 0));
        assert!(!is_newer(Some(&b1), 1));
        let r2 = Record::next(Some(&b1), 700, None, b"{\"keys\":[1]}");
        assert_eq!((r2.generation, r2.fetched_at_ms), (2, 700));
        assert!(is_newer(Some(&r2.encode()), 1));
        assert!(!is_newer(None, 0));
    }

    #[test]
    fn a_record_carries_discoverys_userinfo_endpoint_to_the_vms_that_adopt_it() {
        let r = Record::next(
            None,
            100,
            Some("https://op.example/userinfo"),
            b"{\"keys\":[]}",
        );
        let decoded = Record::decode(&r.encode());
        assert_eq!(decoded.as_ref(), Some(&r));
        let decoded = decoded.unwrap();
        assert_eq!(
            decoded.userinfo_endpoint.as_deref(),
            Some("https://op.example/userinfo")
        );
        assert_eq!(decoded.document, b"{\"keys\":[]}");
        let none = Record::next(None, 100, Some(""), b"d");
        assert_eq!(none.userinfo_endpoint, None);
        assert_eq!(Record::decode(&none.encode()).unwrap().document, b"d");
        // A length running past the end is no record.
        let mut cut = r.encode();
        cut.truncate(RECORD_HEADER + ENDPOINT_LEN + 3);
        assert_eq!(Record::decode(&cut), None);
    }

    #[test]
    fn a_short_or_zero_generation_record_is_no_record() {
        assert_eq!(Record::decode(&[0; 15]), None);
        assert_eq!(Record::decode(&[0; 16]), None);
        assert!(!is_newer(Some(&[0; 20]), 0));
        assert_eq!(Record::next(Some(&[1; 3]), 5, None, b"d").generation, 1);
    }

    #[test]
    fn the_generation_value_only_grows_and_tells_a_tick_whether_to_read_the_record() {
        assert_eq!(generation(None), 0);
        let one = raise_generation(None, 1).unwrap();
        assert_eq!(generation(Some(&one)), 1);
        let three = raise_generation(Some(&one), 3).unwrap();
        assert_eq!(three, b"3");
        // A VM that published generation 2 after another published 3 (it
        // lost no CAS on the record, only the race to the generation) must
        // not take the value back to 2: VMs that saw 3 would stay on it,
        // and those between would never be told of 3.
        assert_eq!(raise_generation(Some(&three), 2), None);
        assert_eq!(raise_generation(Some(&three), 3), None);
        // Garbled: counts as none, so the next publication repairs it.
        assert_eq!(generation(Some(b"x1")), 0);
        assert_eq!(raise_generation(Some(b"x1"), 1).unwrap(), b"1");
    }

    #[test]
    fn shared_keys_are_per_configuration_and_issuer() {
        assert_eq!(
            key("cfg", "https://mpass-proxy.csc.fi", "lease"),
            "mpass_guard/cfg/https://mpass-proxy.csc.fi/lease"
        );
        assert_ne!(key("a", "i", "keys"), key("b", "i", "keys"));
    }
}
