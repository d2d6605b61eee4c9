//! Shadow contracts: what a candidate contract would change, compared with
//! the enforced one on the same verified claims. Pure: two contract results
//! in, a [`ShadowDiff`] out, holding names only (attributes, reasons,
//! versions), never a value, so it may go into counters, the audit line and
//! the decision record. The engine never acts on it.

use crate::contract::{Contract, Denial, Release};

/// One kind of difference, the `change=` label of
/// `shadow_differences` (a fixed set: the counter stays bounded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Change {
    /// Enforced refuses, the shadow would allow.
    WouldAllow,
    /// Enforced allows, the shadow would refuse.
    WouldRefuse,
    /// Both refuse, for different reasons.
    Reason,
    /// The shadow would release an attribute the enforced one does not.
    Added,
    /// The shadow would not release an attribute the enforced one does.
    Removed,
    /// Both release the attribute, with different values (or under another
    /// header): which values differ is not said.
    Values,
}

impl Change {
    /// Every kind, in label order.
    pub const ALL: [Change; 6] = [
        Change::WouldAllow,
        Change::WouldRefuse,
        Change::Reason,
        Change::Added,
        Change::Removed,
        Change::Values,
    ];

    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            Change::WouldAllow => "would_allow",
            Change::WouldRefuse => "would_refuse",
            Change::Reason => "reason",
            Change::Added => "added",
            Change::Removed => "removed",
            Change::Values => "values",
        }
    }
}

/// What the shadow contract would have done, and how it differs from what
/// was done. Names only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShadowDiff {
    /// The shadow contract's version.
    pub contract_version: String,
    /// Whether the shadow would allow.
    pub allowed: bool,
    /// `ok`, or the shadow's refusal reason.
    pub reason: &'static str,
    /// Attributes the shadow would release that the enforced does not.
    pub added: Vec<&'static str>,
    /// Attributes the enforced releases that the shadow would not.
    pub removed: Vec<&'static str>,
    /// Attributes both release whose released header differs.
    pub changed: Vec<&'static str>,
    /// The kinds present, in [`Change::ALL`] order; empty: no difference.
    pub changes: Vec<Change>,
}

impl ShadowDiff {
    /// Whether the shadow would change nothing for this request.
    pub fn is_same(&self) -> bool {
        self.changes.is_empty()
    }
}

/// Compares the enforced contract's result with the shadow's on the same
/// claims. A refused side releases nothing, so allow -> refuse lists every
/// enforced attribute as removed (and the reverse as added).
pub fn compare(
    enforced: &Result<Release, Denial>,
    shadow: &Result<Release, Denial>,
    shadow_version: &str,
) -> ShadowDiff {
    let empty = Release::default();
    let e = enforced.as_ref().unwrap_or(&empty);
    let s = shadow.as_ref().unwrap_or(&empty);
    let header_of = |r: &Release, name: &str| {
        r.released
            .iter()
            .position(|a| *a == name)
            .and_then(|i| r.headers.get(i))
            .cloned()
    };
    let added: Vec<&'static str> = s
        .released
        .iter()
        .filter(|a| !e.released.contains(a))
        .copied()
        .collect();
    let removed: Vec<&'static str> = e
        .released
        .iter()
        .filter(|a| !s.released.contains(a))
        .copied()
        .collect();
    // `released[i]` and `headers[i]` correspond (one header per released
    // attribute, the payload header after them).
    let changed: Vec<&'static str> = e
        .released
        .iter()
        .filter(|a| s.released.contains(a) && header_of(e, a) != header_of(s, a))
        .copied()
        .collect();
    let mut changes = Vec::new();
    match (enforced, shadow) {
        (Err(_), Ok(_)) => changes.push(Change::WouldAllow),
        (Ok(_), Err(_)) => changes.push(Change::WouldRefuse),
        (Err(a), Err(b)) if a.reason != b.reason => changes.push(Change::Reason),
        _ => {}
    }
    if !added.is_empty() {
        changes.push(Change::Added);
    }
    if !removed.is_empty() {
        changes.push(Change::Removed);
    }
    if !changed.is_empty() {
        changes.push(Change::Values);
    }
    ShadowDiff {
        contract_version: shadow_version.to_owned(),
        allowed: shadow.is_ok(),
        reason: match shadow {
            Ok(_) => "ok",
            Err(d) => d.reason,
        },
        added,
        removed,
        changed,
        changes,
    }
}

/// Applies both contracts to the claims and compares them.
pub fn evaluate(
    enforced: &Result<Release, Denial>,
    shadow: &Contract,
    claims: &serde_json::Map<String, serde_json::Value>,
) -> ShadowDiff {
    compare(enforced, &shadow.apply(claims), shadow.version())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(attrs: &[(&'static str, &str)]) -> Result<Release, Denial> {
        Ok(Release {
            headers: attrs
                .iter()
                .map(|(a, v)| (format!("x-{a}"), (*v).to_owned()))
                .collect(),
            released: attrs.iter().map(|(a, _)| *a).collect(),
            ..Release::default()
        })
    }

    fn denied(reason: &'static str) -> Result<Release, Denial> {
        Err(Denial {
            reason,
            attribute: None,
        })
    }

    #[test]
    fn the_same_release_is_no_difference() {
        let a = release(&[("uid", "1"), ("given_name", "x")]);
        let d = compare(&a, &a, "v2");
        assert!(d.is_same());
        assert!(d.allowed);
        assert_eq!(d.reason, "ok");
        assert_eq!(d.contract_version, "v2");
    }

    #[test]
    fn attributes_added_removed_and_changed_are_named() {
        let e = release(&[("uid", "1"), ("email", "a"), ("roles", "r1")]);
        let s = release(&[("uid", "1"), ("roles", "r2"), ("given_name", "x")]);
        let d = compare(&e, &s, "v2");
        assert_eq!(d.added, ["given_name"]);
        assert_eq!(d.removed, ["email"]);
        assert_eq!(d.changed, ["roles"]);
        assert_eq!(d.changes, [Change::Added, Change::Removed, Change::Values]);
    }

    #[test]
    fn a_shadow_refusal_of_an_allowed_request_removes_everything() {
        let e = release(&[("uid", "1")]);
        let d = compare(&e, &denied("organisation_not_permitted"), "v2");
        assert!(!d.allowed);
        assert_eq!(d.reason, "organisation_not_permitted");
        assert_eq!(d.removed, ["uid"]);
        assert_eq!(d.changes, [Change::WouldRefuse, Change::Removed]);
    }

    #[test]
    fn a_shadow_allowing_a_refused_request_adds_its_release() {
        let d = compare(
            &denied("organisation_not_permitted"),
            &release(&[("uid", "1")]),
            "v2",
        );
        assert!(d.allowed);
        assert_eq!(d.added, ["uid"]);
        assert_eq!(d.changes, [Change::WouldAllow, Change::Added]);
    }

    #[test]
    fn two_refusals_differ_only_when_their_reasons_do() {
        let a = denied("organisation_not_permitted");
        assert!(compare(&a, &a, "v2").is_same());
        let d = compare(&a, &denied("test_identity_not_allowed"), "v2");
        assert_eq!(d.changes, [Change::Reason]);
    }

    #[test]
    fn every_change_has_a_stat_safe_label() {
        for c in Change::ALL {
            assert!(c
                .name()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
    }
}
