//! What the glue does with a request: forward it (with header operations),
//! answer it locally, or park it until something it waits for arrives. A
//! [`Decision`] cannot both answer and release; the audit record and the
//! counters travel alongside in an [`Outcome`].

use std::rc::Rc;

use super::audit::Audit;
use super::counters::{CounterId, Counters};
use crate::jwks::IssuerId;
use crate::metadata::{DecisionRecord, Outcome as RecordOutcome};

/// A local reply instead of forwarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// What a parked request waits for; when it arrives (or the wait ends) the
/// request is decided again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitFor {
    /// The issuer's key set (first fetch, or a refetch for an unknown `kid`).
    Keys(IssuerId),
    /// The first good snapshot of the management service (`registry`).
    Registry,
    /// A session's userinfo call (by the session key the call carries).
    Userinfo(u64),
}

/// What happens to the request.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Send it upstream after the header operations (see
    /// [`Decision::apply`]).
    Forward {
        /// Headers to remove (every occurrence), applied first.
        remove: Vec<String>,
        /// Headers to set (replacing), applied after the removals: the
        /// token's carrier rewritten without the token (cookie, query).
        set: Vec<(String, String)>,
        /// Headers to set as bytes (replacing), applied after the removals
        /// and before `set`: the token carriers rewritten without tokens
        /// (cookie, query string, `Referer`, `Origin`), byte for byte.
        set_bytes: Vec<(String, Vec<u8>)>,
        /// What the contract released, shared with the token cache; its
        /// headers are set after `set`.
        release: Option<Rc<Admitted>>,
        /// The gateway-signed token's header and value
        /// (`contract.signed_token`), set after the released headers.
        token: Option<(String, String)>,
    },
    /// Answer locally; the request never reaches the upstream.
    Respond(Response),
    /// Park the request, then decide again with `resumed` set.
    Wait(WaitFor),
}

impl Decision {
    /// Every header to remove (none unless forwarding).
    pub fn removals(&self) -> &[String] {
        match self {
            Decision::Forward { remove, .. } => remove,
            _ => &[],
        }
    }

    /// Every header to set as bytes (the sealed carriers), applied before
    /// [`Decision::headers`].
    pub fn byte_headers(&self) -> &[(String, Vec<u8>)] {
        match self {
            Decision::Forward { set_bytes, .. } => set_bytes,
            _ => &[],
        }
    }

    /// Every header to set, in order: `set`, then the released ones (none
    /// unless forwarding).
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        let (set, release, token) = match self {
            Decision::Forward {
                set,
                release,
                token,
                ..
            } => (set.as_slice(), release.as_ref(), token.as_ref()),
            _ => (&[][..], None, None),
        };
        set.iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .chain(release.into_iter().flat_map(|a| a.headers.iter()))
            .chain(token.map(|(n, v)| (n.as_str(), v.as_str())))
    }

    /// The local reply, when there is one.
    pub fn response(&self) -> Option<&Response> {
        match self {
            Decision::Respond(r) => Some(r),
            _ => None,
        }
    }

    /// What the request waits for, when it is to be parked.
    pub fn wait(&self) -> Option<&WaitFor> {
        match self {
            Decision::Wait(w) => Some(w),
            _ => None,
        }
    }

    /// Applies the header operations to a request's header list (names
    /// lowercase): every occurrence of each removed name goes first, then
    /// each set header replaces any occurrence of its name. Local replies
    /// and waits leave the list alone.
    pub fn apply(&self, headers: &mut Vec<(String, String)>) {
        for name in self.removals() {
            headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        }
        for (name, value) in self.byte_headers() {
            headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
            headers.push((name.clone(), String::from_utf8_lossy(value).into_owned()));
        }
        for (name, value) in self.headers() {
            headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
            headers.push((name.to_owned(), value.to_owned()));
        }
    }
}

/// A decision with what it leaves behind: the audit record (for requests
/// that matched a provider) and the counters to increment once.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub decision: Decision,
    pub audit: Option<Rc<Audit>>,
    /// Counters besides the release's own (see [`Outcome::counter_ids`]).
    pub counters: Counters,
    /// How many tokens the sealer removed from the request.
    pub stripped_tokens: u32,
    /// The audit line of the stripped tokens (no token, no value), if any.
    pub stripped: Option<StrippedAudit>,
    /// The reason of a local reply without an audit record (no provider
    /// decided it): `ambiguous_path`, `invalid_authority`, `unmatched_token`.
    pub refused: Option<&'static str>,
}

/// Tokens taken out of a passing request: which provider (or `unmatched`),
/// from which kinds of carrier, how many. No token, no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrippedAudit {
    pub provider: String,
    pub carriers: Vec<(&'static str, u32)>,
    pub count: u32,
}

impl StrippedAudit {
    /// The JSON log line.
    pub fn to_json(&self, now: i64) -> String {
        #[derive(serde::Serialize)]
        struct Line<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            time: i64,
            provider: &'a str,
            carriers: std::collections::BTreeMap<&'static str, u32>,
            count: u32,
        }
        serde_json::to_string(&Line {
            kind: "mpass_guard.tokens_stripped",
            time: now,
            provider: &self.provider,
            carriers: self.carriers.iter().copied().collect(),
            count: self.count,
        })
        .unwrap_or_default()
    }
}

/// The reason in the record of a request no provider claims.
const NO_PROVIDER: &str = "no_provider";

impl Outcome {
    /// The decision record for filter state (see [`crate::metadata`]):
    /// the audit's for a matched provider, else `unmatched` or the
    /// ambiguous-path refusal. Built from names and released RBAC values only.
    pub fn record(&self) -> DecisionRecord<'_> {
        let status = self.decision.response().map(|r| r.status);
        let mut record = match (&self.audit, status) {
            (Some(audit), _) => audit.record(status),
            (None, Some(status)) => {
                let reason = self.refused.unwrap_or("ambiguous_path");
                let mut r = DecisionRecord::new(RecordOutcome::Deny, reason);
                r.status = Some(status);
                r
            }
            (None, None) => DecisionRecord::new(RecordOutcome::Unmatched, NO_PROVIDER),
        };
        record.stripped_tokens = self.stripped_tokens;
        record
    }

    /// The decision record's bytes ([`DecisionRecord::encode`] of
    /// [`Outcome::record`]), encoded once per cached decision.
    pub fn record_bytes(&self) -> Rc<[u8]> {
        let status = self.decision.response().map(|r| r.status);
        match &self.audit {
            Some(audit) => audit.record_bytes(status, self.stripped_tokens),
            None => self.record().parts().encode_shared(),
        }
    }

    /// Every counter to increment once for this request.
    pub fn counter_ids(&self) -> impl Iterator<Item = CounterId> + '_ {
        let release = match &self.decision {
            Decision::Forward { release, .. } => release.as_ref(),
            _ => None,
        };
        self.counters
            .iter()
            .chain(release.into_iter().flat_map(|a| a.counters.iter()))
            .copied()
    }
}

/// A release for one provider with everything the request path needs
/// already rendered: headers, counters and the audit record.
pub struct Admitted {
    pub(crate) headers: Packed,
    pub(crate) counters: Vec<CounterId>,
    pub(crate) audit: Rc<Audit>,
    /// The released claims, kept only for a provider with a signed token
    /// (what a re-mint signs again).
    pub(crate) claims: Option<serde_json::Map<String, serde_json::Value>>,
}

// Released values stay out of Debug output.
impl std::fmt::Debug for Admitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admitted")
            .field("released", &self.audit.released)
            .finish_non_exhaustive()
    }
}

/// Header names and values in one buffer: a cached release is a handful of
/// allocations however many attributes it sets, which keeps evicting it
/// cheap.
pub(crate) struct Packed {
    text: String,
    /// Per header: end of the name, end of the value (offsets into `text`).
    ends: Vec<(u32, u32)>,
}

impl Packed {
    pub(crate) fn new(headers: &[(String, String)]) -> Packed {
        let mut text = String::with_capacity(headers.iter().map(|(n, v)| n.len() + v.len()).sum());
        let mut ends = Vec::with_capacity(headers.len());
        for (name, value) in headers {
            text.push_str(name);
            let name_end = text.len();
            text.push_str(value);
            ends.push((
                u32::try_from(name_end).unwrap_or(u32::MAX),
                u32::try_from(text.len()).unwrap_or(u32::MAX),
            ));
        }
        Packed { text, ends }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut start = 0usize;
        self.ends.iter().map(move |&(name_end, end)| {
            let (name_end, end) = (name_end as usize, end as usize);
            let name = self.text.get(start..name_end).unwrap_or_default();
            let value = self.text.get(name_end..end).unwrap_or_default();
            start = end;
            (name, value)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::audit::{RecordMemo, RenderMemo};

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn admitted(headers: &[(&str, &str)]) -> Rc<Admitted> {
        Rc::new(Admitted {
            headers: Packed::new(&pairs(headers)),
            counters: vec![CounterId::from_index(7)],
            audit: Rc::new(Audit {
                provider: "shop".to_owned(),
                allowed: true,
                status: 200,
                reason: "ok",
                released: vec!["uid"],
                withheld: Vec::new(),
                purposes: Vec::new(),
                contract_version: "1".to_owned(),
                subject: None,
                token: None,
                rbac_values: Vec::new(),
                shadow: None,
                rendered: RenderMemo::default(),
                encoded: RecordMemo::default(),
            }),
            claims: None,
        })
    }

    #[test]
    fn forwarding_removes_every_occurrence_before_setting() {
        let d = Decision::Forward {
            remove: vec!["x-mpass-uid".to_owned(), "authorization".to_owned()],
            set_bytes: Vec::new(),
            set: vec![("cookie".to_owned(), "a=1".to_owned())],
            release: Some(admitted(&[("x-mpass-uid", "u1")])),
            token: None,
        };
        let mut headers = pairs(&[
            (":path", "/shop"),
            ("x-mpass-uid", "spoof1"),
            ("authorization", "Bearer t"),
            ("X-Mpass-Uid", "spoof2"),
            ("cookie", "a=1; token=t"),
            ("cookie", "b=2"),
        ]);
        d.apply(&mut headers);
        assert_eq!(
            headers,
            pairs(&[(":path", "/shop"), ("cookie", "a=1"), ("x-mpass-uid", "u1")])
        );
    }

    #[test]
    fn a_set_header_replaces_and_is_never_appended() {
        let d = Decision::Forward {
            remove: Vec::new(),
            set_bytes: Vec::new(),
            set: vec![("x-a".to_owned(), "new".to_owned())],
            release: None,
            token: None,
        };
        let mut headers = pairs(&[("x-a", "old"), ("x-b", "keep"), ("x-a", "older")]);
        d.apply(&mut headers);
        assert_eq!(headers, pairs(&[("x-b", "keep"), ("x-a", "new")]));
    }

    #[test]
    fn a_local_reply_or_a_wait_changes_no_header() {
        let before = pairs(&[("authorization", "Bearer t"), ("x-mpass-uid", "spoof")]);
        let respond = Decision::Respond(Response {
            status: 401,
            headers: Vec::new(),
            body: String::new(),
        });
        let wait = Decision::Wait(WaitFor::Keys(IssuerId(0)));
        for d in [respond, wait] {
            let mut headers = before.clone();
            d.apply(&mut headers);
            assert_eq!(headers, before);
            assert_eq!(d.headers().count(), 0);
            assert!(d.removals().is_empty());
        }
    }

    #[test]
    fn an_outcome_counts_its_own_counters_then_the_release() {
        let outcome = Outcome {
            decision: Decision::Forward {
                remove: Vec::new(),
                set: Vec::new(),
                set_bytes: Vec::new(),
                release: Some(admitted(&[])),
                token: None,
            },
            audit: None,
            counters: [CounterId::from_index(1)].into_iter().collect(),
            stripped_tokens: 0,
            stripped: None,
            refused: None,
        };
        let ids: Vec<usize> = outcome.counter_ids().map(CounterId::index).collect();
        assert_eq!(ids, [1, 7]);
    }
}
