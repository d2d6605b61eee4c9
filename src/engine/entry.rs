//! The token cache's entries: a verified token with, per provider it has
//! met, the outcome of its audience and contract checks; and the rule for
//! when a cached entry may still answer (its key still in the set, its
//! times still valid).

use std::rc::Rc;

use super::audit::{Audit, RecordMemo, RenderMemo, Who};
use super::counters::{CounterId, Interner, Tally};
use super::decision::{Admitted, Packed};
use super::refusal::Refusal;
use crate::config::Provider;
use crate::contract::{Contract, Release};
use crate::jwks::{Availability, Issuer, IssuerId, IssuerKeys, KeyStore};
use crate::minted::Slot;
use crate::routing::ProviderId;
use crate::shadow::{self, ShadowDiff};
use crate::verify::{audience_in, Retained};

/// The contracts that apply to a provider now: its own (and its shadow), or
/// both under the current registry snapshot.
#[derive(Debug, Clone)]
pub(crate) struct Contracts {
    pub(crate) contract: Rc<Contract>,
    pub(crate) shadow: Option<Rc<Contract>>,
}

/// What a token means for one provider: the release, or a refusal
/// (audience or contract) that does not depend on time.
pub(crate) type Verdict = Result<Rc<Admitted>, Refusal>;

/// A provider's shadow comparison for one token, cached with its verdict:
/// a warm request replays it (record and counters) without evaluating the
/// shadow contract again.
#[derive(Debug)]
pub(crate) struct Shadowed {
    pub(crate) diff: Rc<ShadowDiff>,
    /// `shadow_evaluations` and one `shadow_differences` per kind.
    pub(crate) counters: Vec<CounterId>,
}

/// A verified token in the cache.
pub(crate) struct Entry {
    /// The token itself: a hit needs the whole token to be equal, not just
    /// its key.
    pub(crate) raw: Box<str>,
    /// Whether `raw` is, as a whole run, a configured issuer's token to the
    /// sealer ([`crate::seal::Issuers::run_is_ours`]), found out once.
    pub(crate) ours: bool,
    pub(crate) token: Retained,
    pub(crate) issuer: IssuerId,
    /// Fingerprint of the verifying key; `None` for a provider's HS secret.
    pub(crate) key: Option<[u8; 32]>,
    /// For HS* tokens: the provider whose secret verified it.
    pub(crate) hmac_provider: Option<ProviderId>,
    pub(crate) who: Who,
    /// Per provider index, computed on first use, with the registry
    /// generation it was computed under (0 for a static contract) and its
    /// shadow comparison when the provider has a shadow contract. A new
    /// registry snapshot makes the verdicts of earlier ones stale, so a
    /// permission withdrawn at run time applies to the next request.
    pub(crate) verdicts: Vec<(ProviderId, u64, Verdict, Option<Rc<Shadowed>>)>,
    /// Per provider with a signed token: the minted token, re-minted only
    /// near its end or under another contract version.
    pub(crate) minted: Vec<(ProviderId, Slot)>,
    /// Userinfo's claims for an issuer with `userinfo`: the contract sees
    /// the ID token's claims plus these ([`crate::userinfo::merge`]).
    pub(crate) userinfo: Option<Rc<serde_json::Map<String, serde_json::Value>>>,
}

/// What a cache lookup found.
pub(crate) enum Hit {
    /// The entry answers.
    Valid,
    /// The token is no longer acceptable (expired): refuse.
    Refused(Refusal),
    /// The entry cannot answer (key gone, other provider's secret): verify
    /// afresh.
    Stale,
}

impl Entry {
    /// The minted-token slot of this provider, made on first use.
    pub(crate) fn slot(&mut self, provider_index: ProviderId) -> Option<&mut Slot> {
        if !self.minted.iter().any(|(p, _)| *p == provider_index) {
            let claims = self.claims().unwrap_or_default();
            self.minted.push((provider_index, Slot::new(&claims)));
        }
        self.minted
            .iter_mut()
            .find(|(p, _)| *p == provider_index)
            .map(|(_, slot)| slot)
    }

    /// The verdict for a provider (and its shadow comparison), computed
    /// once per provider and registry generation.
    pub(crate) fn verdict(
        &mut self,
        provider_index: ProviderId,
        provider: &Provider,
        contracts: &Contracts,
        generation: u64,
        names: &mut Interner,
    ) -> (Verdict, Option<Rc<Shadowed>>) {
        if let Some((_, _, v, s)) = self
            .verdicts
            .iter()
            .find(|(p, g, _, _)| *p == provider_index && *g == generation)
        {
            return (v.clone(), s.clone());
        }
        self.verdicts.retain(|(p, _, _, _)| *p != provider_index);
        // A provider (or a registry snapshot) this token has not met yet:
        // parse its claims again.
        let (v, s) = match self.claims() {
            Ok(claims) => verdict_for(
                &claims,
                provider_index,
                provider,
                contracts,
                self.who.clone(),
                names,
            ),
            Err(e) => (Err(Refusal::Token(e.reason())), None),
        };
        self.verdicts
            .push((provider_index, generation, v.clone(), s.clone()));
        (v, s)
    }

    /// The claims the contract sees: the token's, with userinfo's added.
    fn claims(
        &self,
    ) -> Result<serde_json::Map<String, serde_json::Value>, crate::verify::TokenError> {
        let claims = self.token.claims()?;
        Ok(match &self.userinfo {
            Some(extra) => crate::userinfo::merge(&claims, extra),
            None => claims,
        })
    }

    /// Whether this entry may answer for this provider now. `issuer` is the
    /// entry's issuer, `keys` this VM's remote key state.
    pub(crate) fn revalidate(
        &self,
        provider_index: ProviderId,
        issuer: Option<&Issuer>,
        keys: &mut KeyStore,
        now_ms: u64,
    ) -> Hit {
        // An HS* token was checked with one provider's secret only.
        if self.hmac_provider.is_some_and(|p| p != provider_index) {
            return Hit::Stale;
        }
        let Some(issuer) = issuer else {
            return Hit::Stale;
        };
        if let Some(fingerprint) = &self.key {
            // The key that verified the token must still be in the set: a
            // rotation that removes it ends the token's cached validity.
            let present = match &issuer.keys {
                IssuerKeys::Local(keys) => keys.contains(fingerprint),
                IssuerKeys::Remote { .. } => match keys.get_mut(self.issuer) {
                    Some(remote) => match remote.availability(now_ms) {
                        Availability::Ready(keys) => keys.contains(fingerprint),
                        Availability::Unavailable => false,
                    },
                    None => false,
                },
            };
            if !present {
                return Hit::Stale;
            }
        }
        let now = i64::try_from(now_ms / 1000).unwrap_or(i64::MAX);
        match self.token.check_times(&issuer.time, now) {
            Ok(()) => Hit::Valid,
            Err(e) => Hit::Refused(Refusal::Token(e.reason())),
        }
    }
}

/// The verdict for one provider, computed from the token's claims, and,
/// when the provider has a shadow contract, what that one would change.
/// The shadow runs only where the contract does (a wrong audience is
/// refused before either), on the same normalised claims, and its result
/// is never enforced.
pub(crate) fn verdict_for(
    claims: &serde_json::Map<String, serde_json::Value>,
    provider_index: ProviderId,
    provider: &Provider,
    contracts: &Contracts,
    mut who: Who,
    names: &mut Interner,
) -> (Verdict, Option<Rc<Shadowed>>) {
    if let Err(e) = audience_in(claims, &provider.audiences) {
        return (Err(Refusal::Forbidden(e.reason())), None);
    }
    let normalised = crate::claims::normalise(claims);
    let enforced = contracts.contract.apply_normalised(&normalised);
    let shadowed = contracts.shadow.as_ref().map(|candidate| {
        let diff = shadow::compare(
            &enforced,
            &candidate.apply_normalised(&normalised),
            candidate.version(),
        );
        let counters = names.shadow(provider, &diff.changes);
        Rc::new(Shadowed {
            diff: Rc::new(diff),
            counters,
        })
    });
    who.shadow.clone_from(&shadowed);
    let verdict = enforced
        .map(|release| {
            Rc::new(admit(
                provider_index,
                provider,
                &contracts.contract,
                release,
                who,
                names,
            ))
        })
        .map_err(|d| Refusal::Contract(d.reason));
    (verdict, shadowed)
}

/// Renders a release: packed headers, counters and the audit record.
fn admit(
    index: ProviderId,
    provider: &Provider,
    contract: &Contract,
    release: Release,
    who: Who,
    names: &mut Interner,
) -> Admitted {
    let mut counters = Vec::with_capacity(1 + release.released.len() + release.withheld.len());
    counters.push(names.attribute(index, provider, Tally::Allowed, ""));
    if let Some(s) = &who.shadow {
        counters.extend_from_slice(&s.counters);
    }
    // Per controller: an attribute counts for each controller of the
    // user's permitted roles whose agreement releases it (every one without
    // agreements); two unnamed controllers are one `other`.
    let agreements = contract.agreements();
    let mut by_controller = Vec::new();
    for name in &release.released {
        // The attribute is looked up only where agreements ask for it.
        let attr = agreements.and_then(|ag| Some((ag, crate::claims::lookup(name)?.0)));
        for (controller, held) in &release.controllers {
            let counted = match attr {
                Some((ag, attr)) => ag
                    .for_controller(controller)
                    .is_some_and(|a| a.releases(attr, *held)),
                None => true,
            };
            if counted {
                let id = names.released_by(index, provider, controller, name);
                if !by_controller.contains(&id) {
                    by_controller.push(id);
                }
            }
        }
    }
    counters.extend(by_controller);
    for a in &release.released {
        counters.push(names.attribute(index, provider, Tally::Released, a));
    }
    for a in &release.withheld {
        counters.push(names.attribute(index, provider, Tally::Withheld, a));
    }
    let audit = Audit {
        provider: provider.id.clone(),
        allowed: true,
        status: 200,
        reason: "ok",
        released: release.released,
        withheld: release.withheld,
        purposes: release.purposes,
        contract_version: contract.version().to_owned(),
        subject: who.subject,
        token: who.token,
        rbac_values: release.rbac_values,
        shadow: who.shadow.as_ref().map(|s| Rc::clone(&s.diff)),
        rendered: RenderMemo::default(),
        encoded: RecordMemo::default(),
    };
    Admitted {
        headers: Packed::new(&release.headers),
        counters,
        audit: Rc::new(audit),
        claims: provider
            .signed_token
            .as_ref()
            .map(|_| release.claims.unwrap_or_default()),
    }
}
