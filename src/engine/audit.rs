//! The audit record (no token, no claim value), its JSON line, and the
//! batching policy: [`AuditBatch`] is given lines and times and says when the
//! batch is to be handed to the host; the glue only makes the log call.

use std::fmt::Write as _;
use std::rc::Rc;

use crate::metadata::{DecisionRecord, Outcome as RecordOutcome, Parts, ShadowParts, ShadowRecord};
use crate::shadow::{Change, ShadowDiff};

/// Pending audit lines are written at once beyond this many bytes.
pub const AUDIT_BUFFER_BYTES: usize = 32 * 1024;

/// One audit record: no token, no claim value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audit {
    pub provider: String,
    pub allowed: bool,
    pub status: u16,
    pub reason: &'static str,
    pub released: Vec<&'static str>,
    pub withheld: Vec<&'static str>,
    pub purposes: Vec<(&'static str, std::sync::Arc<str>)>,
    pub contract_version: String,
    /// Keyed pseudonym of `iss` + `sub`, when a key is configured and the
    /// token was verified.
    pub subject: Option<String>,
    /// `iss`, `kid` and `alg` of the verified token; `None` before verification.
    pub token: Option<Rc<TokenFacts>>,
    /// Released role and education-provider values, for the RBAC attributes
    /// of the decision record only (`contract::Release::rbac_values`); never logged.
    pub rbac_values: Vec<(&'static str, Vec<String>)>,
    /// What the provider's shadow contract would have changed (names
    /// only); `None` without a shadow contract or before the contract ran.
    pub shadow: Option<Rc<ShadowDiff>>,
    /// The JSON of everything above, rendered on the first audit line
    /// written (the time is added per request); with the audit log off,
    /// never.
    pub rendered: RenderMemo,
    /// The decision record's bytes, encoded on first use: a cached decision
    /// hands Envoy the same bytes on every request.
    pub encoded: RecordMemo,
}

/// The encoded decision record of one [`Audit`], for one local-reply status
/// and stripped-token count (another pair is encoded afresh). Ignored by
/// equality and debug output: it is a copy of what the audit says.
#[derive(Clone, Default)]
pub struct RecordMemo(std::cell::OnceCell<(RecordKey, Rc<[u8]>)>);

/// The JSON body of one [`Audit`]'s line, rendered on first use. Ignored by
/// equality and debug output, like [`RecordMemo`].
#[derive(Clone, Default)]
pub struct RenderMemo(std::cell::OnceCell<Rc<str>>);

impl RenderMemo {
    /// The body, made by `render` unless already there.
    fn get_or(&self, render: impl FnOnce() -> Rc<str>) -> &str {
        self.0.get_or_init(render)
    }

    /// Whether the body has been rendered.
    pub fn is_rendered(&self) -> bool {
        self.0.get().is_some()
    }
}

impl PartialEq for RenderMemo {
    fn eq(&self, _: &RenderMemo) -> bool {
        true
    }
}

impl Eq for RenderMemo {}

impl std::fmt::Debug for RenderMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RenderMemo")
    }
}

/// What a decision record adds to its audit: local-reply status, stripped tokens.
type RecordKey = (Option<u16>, u32);

impl RecordMemo {
    /// The bytes for `key`, made by `encode` unless already there.
    pub fn get_or(&self, key: RecordKey, encode: impl FnOnce() -> Rc<[u8]>) -> Rc<[u8]> {
        if let Some((k, bytes)) = self.0.get() {
            if *k == key {
                return Rc::clone(bytes);
            }
            return encode();
        }
        let bytes = encode();
        let _ = self.0.set((key, Rc::clone(&bytes)));
        bytes
    }
}

impl PartialEq for RecordMemo {
    fn eq(&self, _: &RecordMemo) -> bool {
        true
    }
}

impl Eq for RecordMemo {}

impl std::fmt::Debug for RecordMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordMemo")
    }
}

/// What the decision record says about a verified token: header facts and
/// the signed issuer, never a claim value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFacts {
    pub issuer: Option<String>,
    pub kid: Option<String>,
    pub alg: &'static str,
}

/// Who a request's token speaks for, as far as the audit may say.
#[derive(Debug, Clone, Default)]
pub(crate) struct Who {
    pub(crate) subject: Option<String>,
    pub(crate) token: Option<Rc<TokenFacts>>,
    /// The shadow comparison of this provider's decision, when it has one.
    pub(crate) shadow: Option<Rc<super::Shadowed>>,
}

impl Audit {
    /// The decision record of this audit: `status` is the local reply's.
    pub fn record(&self, status: Option<u16>) -> DecisionRecord<'_> {
        let outcome = if self.allowed {
            RecordOutcome::Allow
        } else {
            RecordOutcome::Deny
        };
        let mut r = DecisionRecord::new(outcome, self.reason);
        r.provider = Some(&self.provider);
        r.status = status;
        r.released = self.released.clone();
        r.withheld = self.withheld.clone();
        r.contract_version = Some(&self.contract_version);
        r.subject = self.subject.as_deref();
        if let Some(t) = &self.token {
            r.issuer = t.issuer.as_deref();
            r.kid = t.kid.as_deref();
            r.alg = Some(t.alg);
        }
        r.released_values = self
            .rbac_values
            .iter()
            .map(|(n, v)| (*n, v.as_slice()))
            .collect();
        r.shadow = self.shadow.as_deref().map(|s| ShadowRecord {
            decision: if s.allowed { "allow" } else { "deny" },
            reason: s.reason,
            contract_version: &s.contract_version,
            added: s.added.clone(),
            removed: s.removed.clone(),
            changed: s.changed.clone(),
            changes: s.changes.iter().map(|c| c.name()).collect(),
        });
        r
    }

    /// The decision record of this audit borrowed as the writer's
    /// [`Parts`] (what [`Audit::record`] says, without copying a list):
    /// `status` is the local reply's.
    pub fn record_parts(
        &self,
        status: Option<u16>,
        stripped_tokens: u32,
    ) -> Parts<'_, Vec<String>, Change> {
        let decision = if self.allowed {
            RecordOutcome::Allow
        } else {
            RecordOutcome::Deny
        };
        let token = self.token.as_deref();
        Parts {
            provider: Some(&self.provider),
            decision,
            reason: self.reason,
            status,
            released: &self.released,
            withheld: &self.withheld,
            contract_version: Some(&self.contract_version),
            subject: self.subject.as_deref(),
            issuer: token.and_then(|t| t.issuer.as_deref()),
            kid: token.and_then(|t| t.kid.as_deref()),
            alg: token.map(|t| t.alg),
            stripped_tokens,
            released_values: &self.rbac_values,
            shadow: self.shadow.as_deref().map(|s| ShadowParts {
                decision: if s.allowed { "allow" } else { "deny" },
                reason: s.reason,
                contract_version: &s.contract_version,
                added: &s.added,
                removed: &s.removed,
                changed: &s.changed,
                changes: &s.changes,
            }),
        }
    }

    /// The decision record's bytes for `status` and `stripped_tokens`,
    /// encoded once for the pair the request path asks for first.
    pub fn record_bytes(&self, status: Option<u16>, stripped_tokens: u32) -> Rc<[u8]> {
        self.encoded.get_or((status, stripped_tokens), || {
            self.record_parts(status, stripped_tokens).encode_shared()
        })
    }

    /// The JSON log line.
    pub fn to_json(&self, now: i64) -> String {
        let mut out = String::new();
        self.write_json(now, &mut out);
        out
    }

    /// Appends the JSON log line (no newline) to `out`.
    pub fn write_json(&self, now: i64, out: &mut String) {
        let body = self.rendered.get_or(|| self.render_body());
        // `body` is a JSON object: splice the type and time in front.
        let rest = body.get(1..).unwrap_or("}");
        let sep = if rest == "}" { "" } else { "," };
        let _ = write!(
            out,
            r#"{{"type":"mpass_guard.audit","time":{now}{sep}{rest}"#
        );
    }

    /// The record's fields as a JSON object, without type and time.
    pub(crate) fn render_body(&self) -> Rc<str> {
        /// The record as serialised; fields in name order, as a JSON object
        /// from a map would have them.
        #[derive(serde::Serialize)]
        struct Body<'a> {
            contract_version: &'a str,
            decision: &'static str,
            provider: &'a str,
            purposes: std::collections::BTreeMap<&'static str, &'a str>,
            reason: &'static str,
            released: &'a [&'static str],
            #[serde(skip_serializing_if = "Option::is_none")]
            shadow: Option<ShadowBody<'a>>,
            status: u16,
            subject: Option<&'a str>,
            withheld: &'a [&'static str],
        }
        /// The shadow's part: names only.
        #[derive(serde::Serialize)]
        struct ShadowBody<'a> {
            added: &'a [&'static str],
            changed: &'a [&'static str],
            changes: Vec<&'static str>,
            contract_version: &'a str,
            decision: &'static str,
            reason: &'static str,
            removed: &'a [&'static str],
        }
        let body = Body {
            contract_version: &self.contract_version,
            decision: if self.allowed { "allow" } else { "deny" },
            provider: &self.provider,
            purposes: self.purposes.iter().map(|(k, v)| (*k, &**v)).collect(),
            reason: self.reason,
            released: &self.released,
            shadow: self.shadow.as_deref().map(|s| ShadowBody {
                added: &s.added,
                changed: &s.changed,
                changes: s.changes.iter().map(|c| c.name()).collect(),
                contract_version: &s.contract_version,
                decision: if s.allowed { "allow" } else { "deny" },
                reason: s.reason,
                removed: &s.removed,
            }),
            status: self.status,
            subject: self.subject.as_deref(),
            withheld: &self.withheld,
        };
        serde_json::to_string(&body)
            .unwrap_or_else(|_| "{}".to_owned())
            .into()
    }
}

/// What the glue does after [`AuditBatch::push`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// Batching is off: log this line now.
    Log(String),
    /// The batch is full: flush it now ([`AuditBatch::take`] and counters).
    Flush,
    /// Held in the batch.
    Queued,
}

/// Audit lines (and, in the glue, counter increments) gathered for one log
/// call, at most `interval_ms` after the first of them. An interval of 0
/// turns batching off.
#[derive(Debug, Default)]
pub struct AuditBatch {
    interval_ms: u64,
    /// Lines not yet logged, newline-separated.
    text: String,
    /// When the oldest pending line was made (or the batch last flushed).
    since_ms: u64,
}

impl AuditBatch {
    /// A batch flushed every `interval_ms` (0: no batching).
    pub fn new(interval_ms: u64) -> AuditBatch {
        AuditBatch {
            interval_ms,
            ..AuditBatch::default()
        }
    }

    /// Whether lines and counters are batched at all.
    pub fn is_batching(&self) -> bool {
        self.interval_ms > 0
    }

    /// Adds one record made at `now_ms`.
    pub fn push(&mut self, audit: &Audit, now_ms: u64) -> Pushed {
        let secs = i64::try_from(now_ms / 1000).unwrap_or(0);
        if !self.is_batching() {
            return Pushed::Log(audit.to_json(secs));
        }
        if self.text.is_empty() {
            self.since_ms = now_ms;
        } else {
            self.text.push('\n');
        }
        audit.write_json(secs, &mut self.text);
        if self.text.len() >= AUDIT_BUFFER_BYTES {
            Pushed::Flush
        } else {
            Pushed::Queued
        }
    }

    /// Whether the batch is due at `now_ms` (its oldest line is an interval
    /// old, and counters at least once per interval); when it is, the
    /// interval starts again and the caller flushes.
    pub fn due(&mut self, now_ms: u64) -> bool {
        let due = self.is_batching() && now_ms.saturating_sub(self.since_ms) >= self.interval_ms;
        if due {
            self.since_ms = now_ms;
        }
        due
    }

    /// The pending lines (each line one JSON record), emptying the batch.
    pub fn take(&mut self) -> String {
        std::mem::take(&mut self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(reason: &'static str) -> Audit {
        Audit {
            provider: "shop".to_owned(),
            allowed: false,
            status: 401,
            reason,
            released: Vec::new(),
            withheld: Vec::new(),
            purposes: Vec::new(),
            contract_version: "1".to_owned(),
            subject: None,
            token: None,
            rbac_values: Vec::new(),
            shadow: None,
            rendered: RenderMemo::default(),
            encoded: RecordMemo::default(),
        }
    }

    #[test]
    fn an_audit_line_is_json_with_type_and_time_first() {
        let line = record("expired").to_json(1_700_000_000);
        assert!(line.starts_with(r#"{"type":"mpass_guard.audit","time":1700000000,"#));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["decision"], "deny");
        assert_eq!(v["reason"], "expired");
        assert_eq!(v["subject"], serde_json::Value::Null);
    }

    #[test]
    fn a_record_memo_encodes_once_per_status_and_stripped_count() {
        let memo = RecordMemo::default();
        let calls = std::cell::Cell::new(0);
        let encode = |b: u8| -> Rc<[u8]> {
            calls.set(calls.get() + 1);
            Rc::from([b])
        };
        assert_eq!(&*memo.get_or((None, 0), || encode(1)), &[1]);
        assert_eq!(&*memo.get_or((None, 0), || encode(9)), &[1]);
        assert_eq!(calls.get(), 1);
        // Another pair is never answered from the memo.
        assert_eq!(&*memo.get_or((None, 1), || encode(2)), &[2]);
        assert_eq!(&*memo.get_or((Some(401), 0), || encode(3)), &[3]);
        assert_eq!(&*memo.get_or((None, 0), || encode(9)), &[1]);
        assert_eq!(calls.get(), 3);
    }

    #[test]
    fn the_record_bytes_of_an_audit_are_those_of_its_record() {
        let mut a = record("ok");
        a.allowed = true;
        a.released = vec![crate::claims::ROLE, "given_name"];
        a.withheld = vec!["email"];
        a.subject = Some("p:4f2a".to_owned());
        a.token = Some(Rc::new(TokenFacts {
            issuer: Some("https://mpass-proxy.csc.fi".to_owned()),
            kid: None,
            alg: "RS256",
        }));
        a.rbac_values = vec![(
            crate::claims::ROLE,
            vec!["1.2.246.562.10.00000000001;30076;;Opettaja;2;1.2.246.562.10.11;".to_owned()],
        )];
        a.shadow = Some(Rc::new(ShadowDiff {
            contract_version: "2".to_owned(),
            allowed: false,
            reason: "organisation_not_permitted",
            added: Vec::new(),
            removed: vec!["given_name"],
            changed: Vec::new(),
            changes: vec![Change::WouldRefuse, Change::Removed],
        }));
        for (status, stripped) in [(None, 0), (Some(403), 2)] {
            let mut expected = a.record(status);
            expected.stripped_tokens = stripped;
            let expected = crate::metadata::encode_struct(&expected.to_fields());
            assert_eq!(a.record_parts(status, stripped).encode(), expected);
            let fresh = Audit {
                encoded: RecordMemo::default(),
                ..a.clone()
            };
            assert_eq!(&*fresh.record_bytes(status, stripped), expected.as_slice());
            // Asked again, the memo answers with the same buffer.
            assert!(Rc::ptr_eq(
                &fresh.record_bytes(status, stripped),
                &fresh.record_bytes(status, stripped)
            ));
        }
    }

    #[test]
    fn the_body_is_rendered_on_the_first_line_only_and_gives_the_same_line() {
        let a = record("ok");
        assert!(!a.rendered.is_rendered());
        let first = a.to_json(5);
        assert!(a.rendered.is_rendered());
        let expected = format!(
            r#"{{"type":"mpass_guard.audit","time":5,{}"#,
            &a.render_body()[1..]
        );
        assert_eq!(first, expected);
        assert_eq!(a.to_json(5), first);
        assert_eq!(a.to_json(6), first.replace(r#""time":5"#, r#""time":6"#));
    }

    #[test]
    fn without_an_interval_each_line_is_logged_at_once() {
        let mut batch = AuditBatch::new(0);
        assert!(!batch.is_batching());
        assert_eq!(
            batch.push(&record("expired"), 2_000),
            Pushed::Log(record("expired").to_json(2))
        );
        assert!(!batch.due(1_000_000));
        assert_eq!(batch.take(), "");
    }

    #[test]
    fn lines_wait_until_the_oldest_is_an_interval_old() {
        let mut batch = AuditBatch::new(1_000);
        assert_eq!(batch.push(&record("a"), 10_000), Pushed::Queued);
        assert_eq!(batch.push(&record("b"), 10_600), Pushed::Queued);
        assert!(!batch.due(10_999));
        assert!(batch.due(11_000));
        let text = batch.take();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].contains(r#""reason":"a""#) && lines[0].contains(r#""time":10"#));
        assert!(lines[1].contains(r#""reason":"b""#));
        // The interval starts again at the flush.
        assert!(!batch.due(11_500));
        assert!(batch.due(12_000));
        assert_eq!(batch.take(), "");
    }

    #[test]
    fn a_full_batch_asks_for_a_flush_at_once() {
        let mut batch = AuditBatch::new(60_000);
        let line = record("expired").to_json(0).len() + 1;
        let fit = AUDIT_BUFFER_BYTES / line;
        for _ in 0..fit {
            assert_eq!(batch.push(&record("expired"), 0), Pushed::Queued);
        }
        assert_eq!(batch.push(&record("expired"), 0), Pushed::Flush);
        assert_eq!(batch.take().lines().count(), fit + 1);
    }
}
