//! Userinfo results per session (per verified ID token), and the calls the
//! glue is to make. Pure: the engine starts a call by queueing it here and
//! parking the request; the glue takes the queued calls, makes them, and
//! hands each response back; the requests waiting for it then resume.
//!
//! Why beside the token cache and not only in its entries: a call in flight
//! and a failed result must be found by every request of the session (so
//! they wait for the one call, or share its failure), even with the token
//! cache off or its entry evicted. Once a call succeeded the token cache
//! entry made from it holds the attributes too, so a cache hit looks
//! nowhere else. Bounded like the token cache, but least recently used
//! first (`cache::Lru`): a slot must outlive the call it waits for, and
//! recency, not popularity, says which slots are still awaited.

use std::rc::Rc;

use serde_json::{Map, Value};

use crate::cache::Lru;
use crate::jwks::IssuerId;
use crate::userinfo::Failure;

/// Fewest session slots kept, whatever the token cache bounds (a slot
/// must exist while its call is in flight).
const MIN_SLOTS: usize = 256;

/// Where a session's userinfo stands.
#[derive(Debug, Clone)]
pub(crate) enum Slot {
    /// A call is in flight; what its response is checked against.
    Pending {
        issuer: IssuerId,
        sub: String,
        audiences: Vec<String>,
        max_bytes: usize,
        timeout_ms: u64,
        /// When the call started: a call older than its timeout and the
        /// margin is lost (its stream ended, its answer never came).
        started_ms: u64,
    },
    /// Userinfo's claims (registered claims already left out).
    Done(Rc<Map<String, Value>>),
    /// The call failed; requests that waited for it share this result.
    Failed(Failure),
}

struct Session {
    /// The ID token: a slot answers only for a byte-equal token.
    raw: Box<str>,
    slot: Slot,
}

/// A userinfo call to make (`GET`, `Authorization: Bearer`).
pub struct Call {
    /// The session key the response belongs to (`WaitFor::Userinfo`).
    pub key: u64,
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub timeout_ms: u64,
    pub max_response_bytes: usize,
    /// `Bearer <access token>`; never logged.
    authorization: String,
    /// `userinfo_calls`, counted by the glue as it makes the call.
    pub counter: super::CounterId,
}

// The access token stays out of Debug output.
impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("cluster", &self.cluster)
            .field("authority", &self.authority)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Call {
    /// The request headers of the call.
    pub fn headers(&self) -> Vec<(&str, &str)> {
        vec![
            (":method", "GET"),
            (":path", self.path.as_str()),
            (":authority", self.authority.as_str()),
            ("accept", crate::userinfo::ACCEPT),
            ("authorization", self.authorization.as_str()),
            ("user-agent", "mpass-guard"),
        ]
    }
}

/// Per-VM sessions and the calls waiting to be made.
pub(crate) struct Sessions {
    slots: Lru<u64, Session>,
    calls: Vec<Call>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("slots", &self.slots.len())
            .field("calls", &self.calls.len())
            .finish()
    }
}

impl Sessions {
    pub(crate) fn new(max_entries: usize, max_bytes: usize) -> Sessions {
        Sessions {
            slots: Lru::new(max_entries.max(MIN_SLOTS), max_bytes.max(2 * 1024 * 1024)),
            calls: Vec::new(),
        }
    }

    /// The slot of this session, if it is this token's.
    pub(crate) fn get(&mut self, key: u64, raw: &str) -> Option<&Slot> {
        self.slots
            .get_mut(&key)
            .filter(|s| *s.raw == *raw)
            .map(|s| &s.slot)
    }

    /// Starts a call: the slot becomes pending and the call is queued.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        &mut self,
        key: u64,
        raw: &str,
        pending: Slot,
        target: (&str, &str),
        cluster: &str,
        timeout_ms: u64,
        max_response_bytes: usize,
        access_token: &str,
        counter: super::CounterId,
    ) {
        self.slots.insert(
            key,
            Session {
                raw: raw.into(),
                slot: pending,
            },
            raw.len().saturating_add(256),
        );
        self.calls.push(Call {
            key,
            cluster: cluster.to_owned(),
            authority: target.0.to_owned(),
            path: target.1.to_owned(),
            timeout_ms,
            max_response_bytes,
            authorization: format!("Bearer {access_token}"),
            counter,
        });
    }

    /// The pending call of a session: its issuer, `sub`, audiences and size cap.
    pub(crate) fn pending(&mut self, key: u64) -> Option<(IssuerId, String, Vec<String>, usize)> {
        match self.slots.get_mut(&key).map(|s| &s.slot) {
            Some(Slot::Pending {
                issuer,
                sub,
                audiences,
                max_bytes,
                ..
            }) => Some((*issuer, sub.clone(), audiences.clone(), *max_bytes)),
            _ => None,
        }
    }

    /// The call timeout of a pending session (0 for any other).
    pub(crate) fn timeout_ms(&mut self, key: u64) -> u64 {
        match self.slots.get_mut(&key).map(|s| &s.slot) {
            Some(Slot::Pending { timeout_ms, .. }) => *timeout_ms,
            _ => 0,
        }
    }

    /// Settles a pending session (a settled one is left alone).
    pub(crate) fn settle(&mut self, key: u64, slot: Slot, bytes: usize) {
        let Some(session) = self.slots.get_mut(&key) else {
            return;
        };
        if !matches!(session.slot, Slot::Pending { .. }) {
            return;
        }
        let raw = std::mem::take(&mut session.raw);
        let bytes = bytes.saturating_add(raw.len()).saturating_add(64);
        self.slots.insert(key, Session { raw, slot }, bytes);
    }

    /// The calls queued since the last take.
    pub(crate) fn take_calls(&mut self) -> Vec<Call> {
        std::mem::take(&mut self.calls)
    }

    /// Number of sessions held.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }
}
