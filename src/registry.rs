//! The MPASSid management service's provisioning documents, read: which
//! education providers permit which services, and each service's
//! `allowtestlearnerid` setting.
//!
//! Pure: the glue fetches `/api/v2/provisioning/identityproviders` and
//! `/serviceproviders` through an Envoy cluster; this module turns the two
//! bodies into a [`Snapshot`] and answers, for a provider's client ids, which
//! organisations permit it. The shapes and their quirks are described in
//! `shared/mpassid/MANAGEMENT-SERVICE.md`; this module handles them:
//!
//! - Jackson writes the polymorphic `type` key twice with the same value: a
//!   member written twice is accepted when both values are equal, and the
//!   whole document is refused when they differ (two parsers could otherwise
//!   disagree on what the integration is).
//! - An integration set is a full object the first time it appears in a
//!   response and a bare numeric id after that: both forms are read, and ids
//!   resolve after the whole response is read.
//! - No endpoint filters by status or deployment phase: inactive integrations
//!   and other phases are dropped here.
//! - An identity provider with an empty `permissions` list permits **every**
//!   service. mpass-guard never turns that into a permission on its own: the
//!   answer says so ([`Permission::all_services`]) and the contract decides
//!   (deny unless the operator opted in).
//! - A client id may be registered on more than one service provider: the
//!   answer reports it ([`Permissions::duplicate_client_id`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why a provisioning document was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryError {
    /// Not JSON, or a member written twice with different values.
    Malformed(String),
    /// JSON, but not the provisioning shape (the path says where).
    Shape(String),
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryError::Malformed(m) => write!(f, "malformed provisioning document: {m}"),
            RegistryError::Shape(m) => write!(f, "unexpected provisioning document: {m}"),
        }
    }
}

impl std::error::Error for RegistryError {}

/// MPASSid deployment phases, as the management service numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    Testing,
    Production,
    Preproduction,
}

impl Phase {
    /// The phase from its configuration name.
    pub fn from_name(name: &str) -> Option<Phase> {
        match name {
            "testing" | "test" => Some(Phase::Testing),
            "production" => Some(Phase::Production),
            "preproduction" => Some(Phase::Preproduction),
            _ => None,
        }
    }

    fn number(self) -> i64 {
        match self {
            Phase::Testing => 0,
            Phase::Production => 1,
            Phase::Preproduction => 2,
        }
    }
}

/// How a service provider is registered.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceKey {
    /// OIDC `clientId`.
    ClientId(String),
    /// SAML `entityId`.
    EntityId(String),
}

/// One active identity-provider integration of the chosen phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityProvider {
    pub id: i64,
    /// The education provider (data controller) that runs it.
    pub organisation: String,
    /// `None`: the empty list, "every service". Otherwise the permitted
    /// integration sets.
    pub permitted_sets: Option<BTreeSet<i64>>,
    /// Service keys listed inside the permissions (the sets' members as the
    /// service sent them); used when a set id is not among the service
    /// providers' sets.
    pub permitted_services: BTreeSet<ServiceKey>,
}

/// One active service-provider integration of the chosen phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceProvider {
    pub id: i64,
    pub key: ServiceKey,
    pub sets: BTreeSet<i64>,
    /// `allowtestlearnerid`, from the SP, else from one of its sets.
    pub allow_test_learner_id: bool,
}

/// Both lists, read for one deployment phase.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub identity_providers: Vec<IdentityProvider>,
    pub service_providers: Vec<ServiceProvider>,
}

/// How one organisation permits a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission {
    /// The education provider's OID.
    pub organisation: String,
    /// True when the permission comes only from an empty list ("all
    /// services"), never from a set naming this service.
    pub all_services: bool,
}

/// What the registry says about one provider (its client ids).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    /// Permitting organisations, by OID, sorted.
    pub organisations: Vec<Permission>,
    /// Whether some matching service provider allows test learner numbers.
    pub allow_test_learner_id: bool,
    /// Whether any client id was found on a service provider at all.
    pub found: bool,
    /// Client ids registered on more than one active service provider.
    pub duplicate_client_id: Vec<String>,
}

impl Snapshot {
    /// Reads the two provisioning bodies for one phase.
    pub fn parse(
        identity_providers: &[u8],
        service_providers: &[u8],
        phase: Phase,
    ) -> Result<Snapshot, RegistryError> {
        let idps = list(identity_providers, "identityProviders")?;
        let sps = list(service_providers, "serviceProviders")?;
        let mut snapshot = Snapshot::default();
        for (i, item) in idps.iter().enumerate() {
            let at = format!("identityProviders[{i}]");
            if let Some(idp) = identity_provider(item, phase, &at)? {
                snapshot.identity_providers.push(idp);
            }
        }
        // Sets appear in full once, then as bare ids: collect the full ones
        // first, so a bare id can find its set's settings.
        let mut sets: HashMap<i64, bool> = HashMap::new();
        for item in &sps {
            for set in array(item, "integrationSets") {
                if let Value::Object(o) = set {
                    if let Some(id) = o.get("id").and_then(Value::as_i64) {
                        sets.insert(id, data_flag(o, "allowtestlearnerid"));
                    }
                }
            }
        }
        for (i, item) in sps.iter().enumerate() {
            let at = format!("serviceProviders[{i}]");
            if let Some(sp) = service_provider(item, phase, &sets, &at)? {
                snapshot.service_providers.push(sp);
            }
        }
        Ok(snapshot)
    }

    /// Which organisations permit a provider known by these keys (its
    /// `audiences`, as OIDC client ids or SAML entity ids).
    pub fn permissions(&self, keys: &[String]) -> Permissions {
        let mut out = Permissions::default();
        let wanted: BTreeSet<ServiceKey> = keys
            .iter()
            .flat_map(|k| {
                [
                    ServiceKey::ClientId(k.clone()),
                    ServiceKey::EntityId(k.clone()),
                ]
            })
            .collect();
        let mut sets = BTreeSet::new();
        let mut seen: BTreeMap<&ServiceKey, usize> = BTreeMap::new();
        for sp in &self.service_providers {
            if wanted.contains(&sp.key) {
                out.found = true;
                out.allow_test_learner_id |= sp.allow_test_learner_id;
                sets.extend(sp.sets.iter().copied());
                *seen.entry(&sp.key).or_default() += 1;
            }
        }
        out.duplicate_client_id = seen
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(k, _)| match k {
                ServiceKey::ClientId(s) | ServiceKey::EntityId(s) => s.clone(),
            })
            .collect();
        let mut orgs: BTreeMap<String, bool> = BTreeMap::new();
        for idp in &self.identity_providers {
            let (permits, all) = match &idp.permitted_sets {
                None => (true, true),
                Some(permitted) => (
                    permitted.iter().any(|s| sets.contains(s))
                        || idp.permitted_services.iter().any(|k| wanted.contains(k)),
                    false,
                ),
            };
            if permits {
                // A named permission from any of the organisation's
                // integrations outweighs an "all services" one.
                let slot = orgs.entry(idp.organisation.clone()).or_insert(true);
                *slot &= all;
            }
        }
        out.organisations = orgs
            .into_iter()
            .map(|(organisation, all_services)| Permission {
                organisation,
                all_services,
            })
            .collect();
        out
    }
}

fn list(body: &[u8], member: &str) -> Result<Vec<Value>, RegistryError> {
    let value = parse_tolerant(body)?;
    match value {
        Value::Object(mut o) => match o.remove(member) {
            Some(Value::Array(items)) => Ok(items),
            Some(_) => Err(RegistryError::Shape(format!("{member} is not an array"))),
            None => Err(RegistryError::Shape(format!("no {member} member"))),
        },
        _ => Err(RegistryError::Shape("not a JSON object".to_owned())),
    }
}

fn array<'a>(item: &'a Value, member: &str) -> impl Iterator<Item = &'a Value> {
    item.get(member)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// Active, of this phase: the filters no endpoint applies.
fn in_scope(o: &Map<String, Value>, phase: Phase) -> bool {
    o.get("active").and_then(Value::as_bool) == Some(true)
        && o.get("deploymentPhase").and_then(Value::as_i64) == Some(phase.number())
}

fn object<'a>(item: &'a Value, at: &str) -> Result<&'a Map<String, Value>, RegistryError> {
    item.as_object()
        .ok_or_else(|| RegistryError::Shape(format!("{at} is not an object")))
}

fn id_of(o: &Map<String, Value>, at: &str) -> Result<i64, RegistryError> {
    o.get("id")
        .and_then(Value::as_i64)
        .ok_or_else(|| RegistryError::Shape(format!("{at}.id is missing or not an integer")))
}

fn identity_provider(
    item: &Value,
    phase: Phase,
    at: &str,
) -> Result<Option<IdentityProvider>, RegistryError> {
    let o = object(item, at)?;
    let id = id_of(o, at)?;
    if !in_scope(o, phase) {
        return Ok(None);
    }
    let organisation = o
        .get("organization")
        .and_then(|org| org.get("oid"))
        .and_then(Value::as_str)
        .filter(|oid| !oid.is_empty())
        .ok_or_else(|| RegistryError::Shape(format!("{at}.organization.oid is missing")))?;
    let permissions = match o.get("permissions") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(p)) => p.iter().collect(),
        Some(_) => {
            return Err(RegistryError::Shape(format!(
                "{at}.permissions is not an array"
            )))
        }
    };
    let permitted_sets = if permissions.is_empty() {
        None
    } else {
        let mut sets = BTreeSet::new();
        for (j, p) in permissions.iter().enumerate() {
            let to = p.get("to").ok_or_else(|| {
                RegistryError::Shape(format!("{at}.permissions[{j}].to is missing"))
            })?;
            // `to` may, like any identity-referenced object, be a bare id.
            let set = match to {
                Value::Number(n) => n.as_i64(),
                other => other.get("id").and_then(Value::as_i64),
            };
            let set = set.ok_or_else(|| {
                RegistryError::Shape(format!("{at}.permissions[{j}].to.id is missing"))
            })?;
            sets.insert(set);
        }
        Some(sets)
    };
    let mut permitted_services = BTreeSet::new();
    for p in &permissions {
        for member in p
            .get("to")
            .map(|to| array(to, "integrations"))
            .into_iter()
            .flatten()
        {
            if let Some(key) = service_key(member) {
                permitted_services.insert(key);
            }
        }
    }
    Ok(Some(IdentityProvider {
        id,
        organisation: organisation.to_owned(),
        permitted_sets,
        permitted_services,
    }))
}

/// `{"type":"oidc","clientId":..}` or `{"type":"saml","entityId":..}`.
fn service_key(v: &Value) -> Option<ServiceKey> {
    match v.get("type").and_then(Value::as_str)? {
        "oidc" => v
            .get("clientId")
            .and_then(Value::as_str)
            .map(|s| ServiceKey::ClientId(s.to_owned())),
        "saml" => v
            .get("entityId")
            .and_then(Value::as_str)
            .map(|s| ServiceKey::EntityId(s.to_owned())),
        _ => None,
    }
}

fn service_provider(
    item: &Value,
    phase: Phase,
    sets: &HashMap<i64, bool>,
    at: &str,
) -> Result<Option<ServiceProvider>, RegistryError> {
    let o = object(item, at)?;
    let id = id_of(o, at)?;
    if !in_scope(o, phase) {
        return Ok(None);
    }
    let Some(sp) = o.get("configurationEntity").and_then(|c| c.get("sp")) else {
        return Err(RegistryError::Shape(format!(
            "{at}.configurationEntity.sp is missing"
        )));
    };
    let Some(key) = service_key(sp) else {
        // A service of a kind this filter cannot match (no OIDC client id
        // or SAML entity id): nothing in a contract can name it.
        return Ok(None);
    };
    let mut member_sets = BTreeSet::new();
    let mut from_sets = false;
    for (j, set) in array(item, "integrationSets").enumerate() {
        let set_id = match set {
            Value::Number(n) => n.as_i64(),
            Value::Object(s) => s.get("id").and_then(Value::as_i64),
            _ => None,
        }
        .ok_or_else(|| {
            RegistryError::Shape(format!("{at}.integrationSets[{j}] is not a set or set id"))
        })?;
        member_sets.insert(set_id);
        from_sets |= sets.get(&set_id).copied().unwrap_or(false);
    }
    let own = o
        .get("configurationEntity")
        .and_then(Value::as_object)
        .map(|c| data_flag(c, "allowtestlearnerid"));
    // The SP's own setting first; legacy data has it on sets only.
    let allow_test_learner_id = match own {
        Some(true) => true,
        _ if has_data(o, "allowtestlearnerid") => false,
        _ => from_sets,
    };
    Ok(Some(ServiceProvider {
        id,
        key,
        sets: member_sets,
        allow_test_learner_id,
    }))
}

/// A `data` attribute `name` whose content is `"true"`, looked for in the
/// object itself (a configuration entity) or under `configurationEntity`.
fn data_flag(o: &Map<String, Value>, name: &str) -> bool {
    data_value(o, name) == Some("true")
}

fn has_data(o: &Map<String, Value>, name: &str) -> bool {
    o.get("configurationEntity")
        .and_then(Value::as_object)
        .and_then(|c| data_value(c, name))
        .is_some_and(|v| !v.is_empty())
}

fn data_value<'a>(o: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    let attributes = o
        .get("attributes")
        .or_else(|| o.get("configurationEntity")?.get("attributes"))?;
    attributes.as_array()?.iter().find_map(|a| {
        (a.get("type").and_then(Value::as_str) == Some("data")
            && a.get("name").and_then(Value::as_str) == Some(name))
        .then(|| a.get("content").and_then(Value::as_str))
        .flatten()
    })
}

// ---- JSON that tolerates a member written twice with one value -------------

fn parse_tolerant(bytes: &[u8]) -> Result<Value, RegistryError> {
    serde_json::from_slice::<Tolerant>(bytes)
        .map(|Tolerant(v)| v)
        .map_err(|e| RegistryError::Malformed(e.to_string()))
}

struct Tolerant(Value);

impl<'de> Deserialize<'de> for Tolerant {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TolerantVisitor).map(Tolerant)
    }
}

struct TolerantVisitor;

impl<'de> Visitor<'de> for TolerantVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("json where a repeated member repeats its value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Tolerant(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(name) = access.next_key::<String>()? {
            let Tolerant(v) = access.next_value()?;
            match map.get(&name) {
                Some(previous) if *previous != v => {
                    return Err(de::Error::custom(format!(
                        "member {name:?} written twice with different values"
                    )))
                }
                Some(_) => {}
                None => {
                    map.insert(name, v);
                }
            }
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const IDPS: &str = r#"{"identityProviders": [
     {"id": 1000123, "version": 7, "organization": {"oid": "1.2.246.562.10.99887766551", "name": "Testikunta", "children": null},
      "integrationSets": [],
      "permissions": [{"to": {"id": 3000045, "integrations": [
          {"type": "oidc", "clientId": "oppimateriaali-prod"}, {"type": "saml", "entityId": "https://sp.example.fi/saml"}]},
        "lastUpdatedOn": "2026-03-02T14:05:11.208811"}],
      "deploymentPhase": 1, "active": true,
      "configurationEntity": {"attributes": [], "idp": {"type": "wilma", "type": "wilma", "flowName": "Wilma1000123"}}},
     {"id": 1000124, "organization": {"oid": "1.2.246.562.10.11111111111", "name": "Kaikkikunta"},
      "permissions": [], "deploymentPhase": 1, "active": true,
      "configurationEntity": {"attributes": [], "idp": {"type": "azure", "type": "azure"}}},
     {"id": 1000125, "organization": {"oid": "1.2.246.562.10.22222222222", "name": "Poistunut"},
      "permissions": [], "deploymentPhase": 1, "active": false,
      "configurationEntity": {"idp": {"type": "azure", "type": "azure"}}},
     {"id": 4000001, "organization": {"oid": "1.2.246.562.10.33333333333", "name": "Testivaihe"},
      "permissions": [{"to": {"id": 3000045}}], "deploymentPhase": 0, "active": true,
      "configurationEntity": {"idp": {"type": "wilma", "type": "wilma"}}},
     {"id": 1000126, "organization": {"oid": "1.2.246.562.10.44444444444", "name": "Muu"},
      "permissions": [{"to": {"id": 3000099, "integrations": [{"type": "oidc", "clientId": "other"}]}}],
      "deploymentPhase": 1, "active": true,
      "configurationEntity": {"idp": {"type": "wilma", "type": "wilma"}}}]}"#;

    const SPS: &str = r#"{"serviceProviders": [
     {"id": 2000210, "organization": {"oid": "1.2.246.562.10.99000000777"},
      "integrationSets": [{"id": 3000045, "version": 1, "permissions": [], "deploymentPhase": 1, "active": true,
        "configurationEntity": {"attributes": [], "set": {"type": "sp", "name": "Oppimateriaali"}}}],
      "permissions": [], "deploymentPhase": 1, "active": true,
      "configurationEntity": {"attributes": [{"type": "data", "name": "allowtestlearnerid", "content": "true"}],
       "sp": {"type": "oidc", "type": "oidc", "name": "Oppimateriaali", "clientId": "oppimateriaali-prod"}}},
     {"id": 2000211, "integrationSets": [3000045], "permissions": [], "deploymentPhase": 1, "active": true,
      "configurationEntity": {"attributes": [],
       "sp": {"type": "saml", "type": "saml", "entityId": "https://sp.example.fi/saml"}}},
     {"id": 2000212, "integrationSets": [{"id": 3000099, "configurationEntity": {"attributes": [], "set": {"type": "sp"}}}],
      "deploymentPhase": 1, "active": true,
      "configurationEntity": {"attributes": [], "sp": {"type": "oidc", "type": "oidc", "clientId": "other"}}}]}"#;

    fn snapshot() -> Snapshot {
        Snapshot::parse(IDPS.as_bytes(), SPS.as_bytes(), Phase::Production).unwrap()
    }

    fn orgs(p: &Permissions) -> Vec<(&str, bool)> {
        p.organisations
            .iter()
            .map(|o| (o.organisation.as_str(), o.all_services))
            .collect()
    }

    #[test]
    fn a_set_naming_the_client_id_permits_its_organisation_and_an_empty_list_is_marked_all() {
        let p = snapshot().permissions(&["oppimateriaali-prod".to_owned()]);
        assert!(p.found);
        assert_eq!(
            orgs(&p),
            vec![
                ("1.2.246.562.10.11111111111", true),
                ("1.2.246.562.10.99887766551", false)
            ]
        );
        assert!(p.allow_test_learner_id);
        assert!(p.duplicate_client_id.is_empty());
    }

    #[test]
    fn a_set_given_by_bare_id_the_second_time_still_links_its_service() {
        let s = snapshot();
        let saml = s
            .service_providers
            .iter()
            .find(|sp| sp.id == 2000211)
            .unwrap();
        assert_eq!(saml.sets, BTreeSet::from([3000045]));
        let p = s.permissions(&["https://sp.example.fi/saml".to_owned()]);
        assert!(orgs(&p).contains(&("1.2.246.562.10.99887766551", false)));
        // The SAML service does not allow test learner numbers of its own.
        assert!(!p.allow_test_learner_id);
    }

    #[test]
    fn inactive_integrations_and_other_phases_permit_nothing() {
        let p = snapshot().permissions(&["oppimateriaali-prod".to_owned()]);
        let names: Vec<&str> = p
            .organisations
            .iter()
            .map(|o| o.organisation.as_str())
            .collect();
        assert!(!names.contains(&"1.2.246.562.10.22222222222"));
        assert!(!names.contains(&"1.2.246.562.10.33333333333"));
        let testing = Snapshot::parse(IDPS.as_bytes(), SPS.as_bytes(), Phase::Testing).unwrap();
        assert_eq!(testing.identity_providers.len(), 1);
        assert!(testing.service_providers.is_empty());
    }

    #[test]
    fn an_organisation_permitting_another_set_does_not_permit_this_service() {
        let p = snapshot().permissions(&["oppimateriaali-prod".to_owned()]);
        assert!(!orgs(&p)
            .iter()
            .any(|(o, _)| *o == "1.2.246.562.10.44444444444"));
        let other = snapshot().permissions(&["other".to_owned()]);
        assert!(orgs(&other).contains(&("1.2.246.562.10.44444444444", false)));
    }

    #[test]
    fn an_unknown_client_id_is_reported_as_not_found() {
        let p = snapshot().permissions(&["nobody".to_owned()]);
        assert!(!p.found);
        // "All services" organisations still show up: the contract decides.
        assert_eq!(orgs(&p), vec![("1.2.246.562.10.11111111111", true)]);
    }

    #[test]
    fn a_client_id_on_two_service_providers_is_reported() {
        let sps = SPS.replace(
            r#""clientId": "other""#,
            r#""clientId": "oppimateriaali-prod""#,
        );
        let s = Snapshot::parse(IDPS.as_bytes(), sps.as_bytes(), Phase::Production).unwrap();
        let p = s.permissions(&["oppimateriaali-prod".to_owned()]);
        assert_eq!(
            p.duplicate_client_id,
            vec!["oppimateriaali-prod".to_owned()]
        );
    }

    #[test]
    fn a_member_written_twice_with_different_values_refuses_the_document() {
        let idps = IDPS.replacen(
            r#""type": "wilma", "type": "wilma""#,
            r#""type": "wilma", "type": "azure""#,
            1,
        );
        let err = Snapshot::parse(idps.as_bytes(), SPS.as_bytes(), Phase::Production).unwrap_err();
        assert!(matches!(err, RegistryError::Malformed(_)), "{err}");
    }

    #[test]
    fn garbage_and_wrong_shapes_are_errors_not_empty_permissions() {
        for (idps, sps) in [
            ("not json", SPS),
            ("[]", SPS),
            (r#"{"identityProviders": {}}"#, SPS),
            (IDPS, r#"{"serviceProviders": [{"id": "x"}]}"#),
            (
                r#"{"identityProviders": [{"id": 1, "active": true, "deploymentPhase": 1, "permissions": "all"}]}"#,
                SPS,
            ),
        ] {
            assert!(
                Snapshot::parse(idps.as_bytes(), sps.as_bytes(), Phase::Production).is_err(),
                "{idps} / {sps}"
            );
        }
    }

    #[test]
    fn test_learner_setting_comes_from_the_set_when_the_service_has_none() {
        let sps = r#"{"serviceProviders": [
         {"id": 2000300, "integrationSets": [{"id": 3000050, "configurationEntity": {"attributes": [
            {"type": "data", "name": "allowtestlearnerid", "content": "true"}], "set": {"type": "sp"}}}],
          "deploymentPhase": 1, "active": true,
          "configurationEntity": {"attributes": [], "sp": {"type": "oidc", "type": "oidc", "clientId": "legacy"}}},
         {"id": 2000301, "integrationSets": [3000050], "deploymentPhase": 1, "active": true,
          "configurationEntity": {"attributes": [{"type": "data", "name": "allowtestlearnerid", "content": "false"}],
           "sp": {"type": "oidc", "type": "oidc", "clientId": "strict"}}}]}"#;
        let s = Snapshot::parse(IDPS.as_bytes(), sps.as_bytes(), Phase::Production).unwrap();
        assert!(s.permissions(&["legacy".to_owned()]).allow_test_learner_id);
        // The service's own "false" wins over its set's "true".
        assert!(!s.permissions(&["strict".to_owned()]).allow_test_learner_id);
    }
}
