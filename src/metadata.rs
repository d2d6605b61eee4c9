//! The decision record the filter publishes per request for Envoy's access
//! log and RBAC filter, and its encoding as a serialized
//! `google.protobuf.Struct` (protobuf wire format, written by hand).
//!
//! Envoy 1.40 gives a Wasm filter no way to write dynamic metadata: a
//! property set with `proxy_set_property(["mpass_guard"], ..)` lands in
//! filter state under [`FILTER_STATE_KEY`]. Declared once per root context
//! as a `Struct` (the foreign function `declare_property` with
//! [`declare_property_arguments`]), it is read as a structure by
//! `%FILTER_STATE(wasm.mpass_guard:TYPED)%` and by CEL in RBAC conditions
//! (see `docs/deploying.md`, "Decision metadata").
//!
//! This module owns the record's shape and both encodings; it knows no
//! proxy-wasm type. The glue writes the bytes.
//!
//! # What the record may carry
//!
//! Names (of attributes, reasons, the provider), the subject's keyed
//! pseudonym, token header facts (`kid`, `alg`) and, under `attributes`, only
//! values RBAC needs, derived from attributes the contract *released*: role
//! codes, organisation OIDs and `<oid>:<code>` pairs. A value given for an
//! attribute that is not in `released`, or that is also in `withheld`, is
//! dropped when the record is encoded, so the filter state can never hold
//! more than the upstream was allowed to see.
//!
//! # Wire format
//!
//! `Struct { map<string, Value> fields = 1 }`, a map entry being a message
//! `{ key = 1, value = 2 }`; `Value` is a oneof `null_value = 1` (enum),
//! `number_value = 2` (double), `string_value = 3`, `bool_value = 4`,
//! `struct_value = 5`, `list_value = 6`; `ListValue { repeated Value values
//! = 1 }`. Fields are written in the order given, so the same record always
//! gives the same bytes.

use crate::claims::{self, OrgScope};
use std::borrow::Cow;

mod writer;
pub use writer::{Name, Parts, ShadowParts};

/// The property path (one element) the glue writes the record to.
pub const PROPERTY: &str = "mpass_guard";
/// The filter-state key Envoy stores the property under (`wasm.` + path).
pub const FILTER_STATE_KEY: &str = "wasm.mpass_guard";
/// The schema of the declared property: the type URL of `Struct`.
pub const STRUCT_SCHEMA: &str = "type.googleapis.com/google.protobuf.Struct";
/// The foreign function that declares a property.
pub const DECLARE_PROPERTY: &str = "declare_property";

/// What the filter did with the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Forwarded with the released attributes.
    Allow,
    /// Refused with a local reply.
    Deny,
    /// No provider matched; forwarded stripped.
    Unmatched,
}

impl Outcome {
    /// The value written under `decision`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
            Outcome::Unmatched => "unmatched",
        }
    }
}

/// One request's decision, as published in filter state. Every key is
/// always written; what is unknown on a path is `null`, a list with nothing
/// in it is empty, so a reader sees one schema.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionRecord<'a> {
    /// The matched provider's id.
    pub provider: Option<&'a str>,
    /// `allow`, `deny` or `unmatched`.
    pub decision: Outcome,
    /// Why (a reason constant, never a value).
    pub reason: &'a str,
    /// The status of the filter's local reply; `None` when forwarded.
    pub status: Option<u16>,
    /// Canonical names of the released attributes.
    pub released: Vec<&'a str>,
    /// Canonical names (and summaries) of attributes present but withheld.
    pub withheld: Vec<&'a str>,
    /// The contract version applied.
    pub contract_version: Option<&'a str>,
    /// The keyed pseudonym of the subject, never `sub` itself.
    pub subject: Option<&'a str>,
    /// The token's issuer.
    pub issuer: Option<&'a str>,
    /// The key id of the token's header.
    pub kid: Option<&'a str>,
    /// The algorithm of the token's header.
    pub alg: Option<&'a str>,
    /// How many tokens were removed from the request.
    pub stripped_tokens: u32,
    /// Released values by attribute name. Only roles and education provider
    /// infos are read, and only for names in `released` and not in
    /// `withheld` (see [`DecisionRecord::attributes`]).
    pub released_values: Vec<(&'a str, &'a [String])>,
    /// What the provider's shadow contract would have done; `None` (written
    /// as `null`) without one. Names only.
    pub shadow: Option<ShadowRecord<'a>>,
}

/// The `shadow` part of the record: the candidate contract's decision and
/// the attribute names it would release differently. Never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShadowRecord<'a> {
    /// `allow` or `deny`.
    pub decision: &'static str,
    /// `ok` or the refusal reason the shadow would give.
    pub reason: &'static str,
    /// The shadow contract's version.
    pub contract_version: &'a str,
    /// Attributes it would release in addition.
    pub added: Vec<&'static str>,
    /// Attributes it would no longer release.
    pub removed: Vec<&'static str>,
    /// Attributes both release with a different value.
    pub changed: Vec<&'static str>,
    /// The kinds of difference (`would_allow`, `would_refuse`, `reason`,
    /// `added`, `removed`, `values`); empty when the shadow agrees.
    pub changes: Vec<&'static str>,
}

/// The values under `attributes`, derived from released roles and education
/// provider infos. Each list is sorted and without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RbacAttributes {
    /// Role codes `"1"`..`"6"` of the released roles.
    pub role_codes: Vec<String>,
    /// Education provider OIDs of the released roles and provider infos.
    pub organisations: Vec<String>,
    /// `<provider OID>:<role code>` of each released role with a code.
    pub org_roles: Vec<String>,
}

impl<'a> DecisionRecord<'a> {
    /// A record with only the decision and reason; everything else unknown.
    pub fn new(decision: Outcome, reason: &'a str) -> Self {
        DecisionRecord {
            provider: None,
            decision,
            reason,
            status: None,
            released: Vec::new(),
            withheld: Vec::new(),
            contract_version: None,
            subject: None,
            issuer: None,
            kid: None,
            alg: None,
            stripped_tokens: 0,
            released_values: Vec::new(),
            shadow: None,
        }
    }

    /// The RBAC values, from released values only. The released/withheld
    /// check is made here, at the point of use, rather than when values are
    /// added, so no order of building the record can leak a withheld value.
    pub fn attributes(&self) -> RbacAttributes {
        let mut out = RbacAttributes::default();
        for (name, values) in &self.released_values {
            if !self.released.contains(name) || self.withheld.contains(name) {
                continue;
            }
            let Some((attr, _)) = claims::lookup(name) else {
                continue;
            };
            match attr.scope {
                OrgScope::Role => {
                    for role in values.iter().filter_map(|v| claims::parse_role(v)) {
                        let provider = role.provider.trim();
                        let provider_ok = claims::is_organisation_oid(provider);
                        if provider_ok {
                            out.organisations.push(provider.to_owned());
                        }
                        if let Some(code) = role.code {
                            out.role_codes.push(code.to_string());
                            if provider_ok {
                                out.org_roles.push(format!("{provider}:{code}"));
                            }
                        }
                    }
                }
                OrgScope::ProviderInfo => {
                    for v in values.iter() {
                        let oid = v.split(';').next().unwrap_or_default().trim();
                        if claims::is_organisation_oid(oid) {
                            out.organisations.push(oid.to_owned());
                        }
                    }
                }
                _ => {}
            }
        }
        for list in [
            &mut out.role_codes,
            &mut out.organisations,
            &mut out.org_roles,
        ] {
            list.sort_unstable();
            list.dedup();
        }
        out
    }

    /// The record as a `Struct` value tree, keys in a fixed order.
    pub fn to_fields(&self) -> Vec<(&'a str, Value<'a>)> {
        let a = self.attributes();
        let owned = |v: Vec<String>| Value::List(v.into_iter().map(Value::from).collect());
        let names = |v: &[&'a str]| Value::List(v.iter().map(|s| Value::from(*s)).collect());
        vec![
            ("provider", Value::opt(self.provider)),
            ("decision", Value::from(self.decision.as_str())),
            ("reason", Value::from(self.reason)),
            (
                "status",
                self.status
                    .map_or(Value::Null, |s| Value::Number(f64::from(s))),
            ),
            ("released", names(&self.released)),
            ("withheld", names(&self.withheld)),
            ("contract_version", Value::opt(self.contract_version)),
            ("subject", Value::opt(self.subject)),
            ("issuer", Value::opt(self.issuer)),
            ("kid", Value::opt(self.kid)),
            ("alg", Value::opt(self.alg)),
            (
                "stripped_tokens",
                Value::Number(f64::from(self.stripped_tokens)),
            ),
            (
                "attributes",
                Value::Struct(vec![
                    ("role_codes", owned(a.role_codes)),
                    ("organisations", owned(a.organisations)),
                    ("org_roles", owned(a.org_roles)),
                ]),
            ),
            (
                "shadow",
                self.shadow.as_ref().map_or(Value::Null, |s| {
                    let names = |v: &[&'static str]| {
                        Value::List(v.iter().map(|n| Value::from(*n)).collect())
                    };
                    Value::Struct(vec![
                        ("decision", Value::from(s.decision)),
                        ("reason", Value::from(s.reason)),
                        ("contract_version", Value::from(s.contract_version)),
                        ("added", names(&s.added)),
                        ("removed", names(&s.removed)),
                        ("changed", names(&s.changed)),
                        ("changes", names(&s.changes)),
                    ])
                }),
            ),
        ]
    }

    /// The serialized `google.protobuf.Struct` the glue writes to
    /// [`PROPERTY`]: the bytes of [`encode_struct`] of
    /// [`DecisionRecord::to_fields`], written without the value tree
    /// ([`Parts::encode`]).
    pub fn encode(&self) -> Vec<u8> {
        self.parts().encode()
    }

    /// The record borrowed as the writer's [`Parts`].
    pub fn parts(&self) -> Parts<'_, &'a [String], &'static str> {
        Parts {
            provider: self.provider,
            decision: self.decision,
            reason: self.reason,
            status: self.status,
            released: &self.released,
            withheld: &self.withheld,
            contract_version: self.contract_version,
            subject: self.subject,
            issuer: self.issuer,
            kid: self.kid,
            alg: self.alg,
            stripped_tokens: self.stripped_tokens,
            released_values: &self.released_values,
            shadow: self.shadow.as_ref().map(|s| ShadowParts {
                decision: s.decision,
                reason: s.reason,
                contract_version: s.contract_version,
                added: &s.added,
                removed: &s.removed,
                changed: &s.changed,
                changes: &s.changes,
            }),
        }
    }
}

/// A `google.protobuf.Value`.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// `null_value`.
    Null,
    /// `number_value` (a double).
    Number(f64),
    /// `string_value`.
    String(Cow<'a, str>),
    /// `bool_value`.
    Bool(bool),
    /// `struct_value`; fields in the order written. A key given twice is
    /// written twice, and protobuf readers keep the last.
    Struct(Vec<(&'a str, Value<'a>)>),
    /// `list_value`.
    List(Vec<Value<'a>>),
}

impl<'a> Value<'a> {
    /// A string, or `null` when absent.
    pub fn opt(s: Option<&'a str>) -> Self {
        s.map_or(Value::Null, Value::from)
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(s: &'a str) -> Self {
        Value::String(Cow::Borrowed(s))
    }
}

impl From<String> for Value<'_> {
    fn from(s: String) -> Self {
        Value::String(Cow::Owned(s))
    }
}

const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;

const fn tag(field: u8, wire: u8) -> u8 {
    // Every field number here is below 16, so a tag is one byte.
    (field << 3) | wire
}

fn varint_len(mut n: usize) -> usize {
    let mut len = 1;
    while n >= 0x80 {
        n >>= 7;
        len += 1;
    }
    len
}

fn put_varint(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        // Truncation is the point: the low seven bits, with the
        // continuation bit.
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// A length-delimited field: its tag, length and body length in total.
fn delimited_len(body: usize) -> usize {
    1 + varint_len(body) + body
}

fn put_bytes(out: &mut Vec<u8>, field: u8, bytes: &[u8]) {
    out.push(tag(field, LEN));
    put_varint(out, bytes.len());
    out.extend_from_slice(bytes);
}

fn value_body_len(v: &Value) -> usize {
    match v {
        Value::Null | Value::Bool(_) => 2,
        Value::Number(_) => 9,
        Value::String(s) => delimited_len(s.len()),
        Value::Struct(fields) => delimited_len(struct_body_len(fields)),
        Value::List(items) => delimited_len(list_body_len(items)),
    }
}

fn entry_body_len(key: &str, v: &Value) -> usize {
    delimited_len(key.len()) + delimited_len(value_body_len(v))
}

fn struct_body_len(fields: &[(&str, Value)]) -> usize {
    fields
        .iter()
        .map(|(k, v)| delimited_len(entry_body_len(k, v)))
        .sum()
}

fn list_body_len(items: &[Value]) -> usize {
    items.iter().map(|v| delimited_len(value_body_len(v))).sum()
}

fn put_value_body(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(&[tag(1, VARINT), 0]),
        Value::Number(n) => {
            out.push(tag(2, I64));
            out.extend_from_slice(&n.to_le_bytes());
        }
        Value::String(s) => put_bytes(out, 3, s.as_bytes()),
        Value::Bool(b) => out.extend_from_slice(&[tag(4, VARINT), u8::from(*b)]),
        Value::Struct(fields) => {
            out.push(tag(5, LEN));
            put_varint(out, struct_body_len(fields));
            put_struct_body(out, fields);
        }
        Value::List(items) => {
            out.push(tag(6, LEN));
            put_varint(out, list_body_len(items));
            for item in items {
                out.push(tag(1, LEN));
                put_varint(out, value_body_len(item));
                put_value_body(out, item);
            }
        }
    }
}

fn put_struct_body(out: &mut Vec<u8>, fields: &[(&str, Value)]) {
    for (k, v) in fields {
        out.push(tag(1, LEN));
        put_varint(out, entry_body_len(k, v));
        put_bytes(out, 1, k.as_bytes());
        out.push(tag(2, LEN));
        put_varint(out, value_body_len(v));
        put_value_body(out, v);
    }
}

/// Serializes `fields` as a `google.protobuf.Struct`, in the order given.
pub fn encode_struct(fields: &[(&str, Value)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(struct_body_len(fields));
    put_struct_body(&mut out, fields);
    out
}

/// `WasmType.Protobuf` in Envoy's `declare_property.proto`.
const WASM_TYPE_PROTOBUF: usize = 3;

/// The serialized `envoy.source.extensions.common.wasm.DeclarePropertyArguments`
/// that declares `name` as a `Struct` property, the argument of the foreign
/// function [`DECLARE_PROPERTY`].
///
/// `span` (5) is left at its default, `FilterChain` (0), as proto3 writes
/// defaults: the record lives as long as the request's filter chain, which is
/// what the access log and RBAC read. With `readonly`, the first write of a
/// request is final and Envoy answers any later write (ours or another Wasm
/// filter's) with BadArgument, so the glue must write exactly once and must
/// not use a host call that panics on that status.
pub fn declare_property_arguments(name: &str, readonly: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + STRUCT_SCHEMA.len() + 8);
    put_bytes(&mut out, 1, name.as_bytes());
    if readonly {
        out.extend_from_slice(&[tag(2, VARINT), 1]);
    }
    out.push(tag(3, VARINT));
    put_varint(&mut out, WASM_TYPE_PROTOBUF);
    put_bytes(&mut out, 4, STRUCT_SCHEMA.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // An independent protobuf reader: it knows the wire format and the
    // Struct/Value field numbers, and shares no code with the writer above.

    #[derive(Debug, Clone, PartialEq)]
    enum Wire<'b> {
        Varint(u64),
        Fixed64([u8; 8]),
        Bytes(&'b [u8]),
    }

    #[derive(Debug, Clone, PartialEq)]
    enum Decoded {
        Null,
        Number(f64),
        Text(String),
        Flag(bool),
        Map(Vec<(String, Decoded)>),
        Seq(Vec<Decoded>),
    }

    fn read_varint(buf: &[u8], pos: &mut usize) -> u64 {
        let mut n = 0u64;
        let mut shift = 0;
        loop {
            let b = buf[*pos];
            *pos += 1;
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return n;
            }
            shift += 7;
            assert!(shift < 64, "varint too long");
        }
    }

    fn read_fields(buf: &[u8]) -> Vec<(u64, Wire<'_>)> {
        let mut pos = 0;
        let mut out = Vec::new();
        while pos < buf.len() {
            let key = read_varint(buf, &mut pos);
            let wire = match key & 7 {
                0 => Wire::Varint(read_varint(buf, &mut pos)),
                1 => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&buf[pos..pos + 8]);
                    pos += 8;
                    Wire::Fixed64(b)
                }
                2 => {
                    let len = read_varint(buf, &mut pos) as usize;
                    let body = &buf[pos..pos + len];
                    pos += len;
                    Wire::Bytes(body)
                }
                w => panic!("unexpected wire type {w}"),
            };
            out.push((key >> 3, wire));
        }
        out
    }

    fn read_struct(buf: &[u8]) -> Vec<(String, Decoded)> {
        read_fields(buf)
            .into_iter()
            .map(|(field, wire)| {
                assert_eq!(field, 1, "Struct has only field 1");
                let Wire::Bytes(entry) = wire else {
                    panic!("map entry is not length-delimited")
                };
                let mut key = None;
                let mut value = None;
                for (f, w) in read_fields(entry) {
                    match (f, w) {
                        (1, Wire::Bytes(k)) => key = Some(String::from_utf8(k.to_vec()).unwrap()),
                        (2, Wire::Bytes(v)) => value = Some(read_value(v)),
                        other => panic!("unexpected map entry field {other:?}"),
                    }
                }
                (key.unwrap(), value.unwrap())
            })
            .collect()
    }

    fn read_value(buf: &[u8]) -> Decoded {
        let fields = read_fields(buf);
        assert_eq!(fields.len(), 1, "a Value sets exactly one oneof field");
        match fields.into_iter().next().unwrap() {
            (1, Wire::Varint(0)) => Decoded::Null,
            (2, Wire::Fixed64(b)) => Decoded::Number(f64::from_le_bytes(b)),
            (3, Wire::Bytes(s)) => Decoded::Text(String::from_utf8(s.to_vec()).unwrap()),
            (4, Wire::Varint(b)) => Decoded::Flag(b != 0),
            (5, Wire::Bytes(s)) => Decoded::Map(read_struct(s)),
            (6, Wire::Bytes(l)) => Decoded::Seq(
                read_fields(l)
                    .into_iter()
                    .map(|(f, w)| match (f, w) {
                        (1, Wire::Bytes(v)) => read_value(v),
                        other => panic!("unexpected ListValue field {other:?}"),
                    })
                    .collect(),
            ),
            other => panic!("unexpected Value field {other:?}"),
        }
    }

    fn get<'d>(m: &'d [(String, Decoded)], key: &str) -> &'d Decoded {
        &m.iter().find(|(k, _)| k == key).unwrap().1
    }

    fn texts(items: &[&str]) -> Decoded {
        Decoded::Seq(items.iter().map(|s| Decoded::Text((*s).into())).collect())
    }

    const ORG_A: &str = "1.2.246.562.10.00000000001";
    const ORG_B: &str = "1.2.246.562.10.00000000002";

    fn roles() -> Vec<String> {
        vec![
            format!("{ORG_A};30076;;Opettaja;2;1.2.246.562.10.11;"),
            format!("{ORG_B};30077;;Rehtori;6;1.2.246.562.10.12;"),
            // The same role again, and a role with an unknown code.
            format!("{ORG_A};30076;;Opettaja;2;1.2.246.562.10.11;"),
            format!("{ORG_B};30077;;Kokki;;1.2.246.562.10.12;"),
        ]
    }

    #[test]
    fn an_empty_struct_is_zero_bytes() {
        assert!(encode_struct(&[]).is_empty());
    }

    #[test]
    fn every_value_kind_reads_back_through_an_independent_reader() {
        let long = "x".repeat(300);
        let fields = vec![
            ("null", Value::Null),
            ("zero", Value::Number(0.0)),
            ("negative", Value::Number(-1.5)),
            ("huge", Value::Number(1e300)),
            ("unicode", Value::from("Äiti ja ö 🦀 中文")),
            ("empty_text", Value::from("")),
            ("long", Value::from(long.clone())),
            ("yes", Value::Bool(true)),
            ("no", Value::Bool(false)),
            ("empty_list", Value::List(vec![])),
            ("empty_struct", Value::Struct(vec![])),
            (
                "nested",
                Value::Struct(vec![(
                    "inner",
                    Value::List(vec![
                        Value::Number(2.0),
                        Value::Struct(vec![("deep", Value::from("ü"))]),
                        Value::List(vec![Value::Null]),
                    ]),
                )]),
            ),
            ("ключ", Value::from("значение")),
        ];
        let decoded = read_struct(&encode_struct(&fields));
        let expected = vec![
            ("null", Decoded::Null),
            ("zero", Decoded::Number(0.0)),
            ("negative", Decoded::Number(-1.5)),
            ("huge", Decoded::Number(1e300)),
            ("unicode", Decoded::Text("Äiti ja ö 🦀 中文".into())),
            ("empty_text", Decoded::Text(String::new())),
            ("long", Decoded::Text(long)),
            ("yes", Decoded::Flag(true)),
            ("no", Decoded::Flag(false)),
            ("empty_list", Decoded::Seq(vec![])),
            ("empty_struct", Decoded::Map(vec![])),
            (
                "nested",
                Decoded::Map(vec![(
                    "inner".into(),
                    Decoded::Seq(vec![
                        Decoded::Number(2.0),
                        Decoded::Map(vec![("deep".into(), Decoded::Text("ü".into()))]),
                        Decoded::Seq(vec![Decoded::Null]),
                    ]),
                )]),
            ),
            ("ключ", Decoded::Text("значение".into())),
        ];
        let expected: Vec<(String, Decoded)> = expected
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(decoded, expected);
    }

    #[test]
    fn a_300_byte_string_has_a_two_byte_length() {
        let bytes = encode_struct(&[("k", Value::from("y".repeat(300)))]);
        // entry tag, entry length (2 bytes: 3 + 2 + 1 + 3 + 300 > 127), key...
        assert_eq!(bytes[0], 0x0a);
        assert!(bytes[1] & 0x80 != 0);
        assert_eq!(read_varint(&bytes, &mut 1), (bytes.len() - 3) as u64);
    }

    fn allowed_record(values: &[String]) -> DecisionRecord<'_> {
        let mut r = DecisionRecord::new(Outcome::Allow, "released");
        r.provider = Some("studeo");
        r.released = vec![claims::ROLE, "given_name"];
        r.withheld = vec!["email", "never_releasable"];
        r.contract_version = Some("2026-11");
        r.subject = Some("p:4f2a");
        r.issuer = Some("https://mpass-proxy.csc.fi");
        r.kid = Some("k1");
        r.alg = Some("RS256");
        r.stripped_tokens = 2;
        r.released_values = vec![(claims::ROLE, values)];
        r
    }

    #[test]
    fn the_record_lists_every_key_in_a_fixed_order_and_encodes_the_same_twice() {
        let roles = roles();
        let r = allowed_record(&roles);
        let keys: Vec<String> = read_struct(&r.encode())
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            keys,
            [
                "provider",
                "decision",
                "reason",
                "status",
                "released",
                "withheld",
                "contract_version",
                "subject",
                "issuer",
                "kid",
                "alg",
                "stripped_tokens",
                "attributes",
                "shadow"
            ]
        );
        assert_eq!(r.encode(), r.clone().encode());
    }

    #[test]
    fn released_roles_give_sorted_unique_codes_organisations_and_pairs() {
        let roles = roles();
        let decoded = read_struct(&allowed_record(&roles).encode());
        assert_eq!(get(&decoded, "decision"), &Decoded::Text("allow".into()));
        assert_eq!(get(&decoded, "status"), &Decoded::Null);
        assert_eq!(get(&decoded, "stripped_tokens"), &Decoded::Number(2.0));
        assert_eq!(
            get(&decoded, "released"),
            &texts(&[claims::ROLE, "given_name"])
        );
        let Decoded::Map(attrs) = get(&decoded, "attributes") else {
            panic!("attributes is not a struct")
        };
        assert_eq!(get(attrs, "role_codes"), &texts(&["2", "6"]));
        assert_eq!(get(attrs, "organisations"), &texts(&[ORG_A, ORG_B]));
        let pairs = [format!("{ORG_A}:2"), format!("{ORG_B}:6")];
        assert_eq!(get(attrs, "org_roles"), &texts(&[&pairs[0], &pairs[1]]));
    }

    #[test]
    fn released_provider_infos_add_their_organisation() {
        let infos = vec![format!("{ORG_B};Esimerkkilä"), "not-an-oid;X".to_owned()];
        let mut r = DecisionRecord::new(Outcome::Allow, "released");
        r.released = vec!["urn:mpass.id:educationProviderInfo"];
        r.released_values = vec![("urn:mpass.id:educationProviderInfo", &infos)];
        assert_eq!(r.attributes().organisations, [ORG_B]);
        assert!(r.attributes().role_codes.is_empty());
    }

    #[test]
    fn values_of_a_withheld_or_unreleased_attribute_never_reach_attributes() {
        let roles = roles();
        // Role values given, but the role attribute was withheld.
        let mut withheld = allowed_record(&roles);
        withheld.released = vec!["given_name"];
        withheld.withheld = vec![claims::ROLE];
        // Listed as released and withheld at once: withheld wins.
        let mut both = allowed_record(&roles);
        both.withheld.push(claims::ROLE);
        // Not mentioned at all.
        let mut absent = allowed_record(&roles);
        absent.released.clear();
        for r in [withheld, both, absent] {
            assert_eq!(r.attributes(), RbacAttributes::default());
            let bytes = r.encode();
            for org in [ORG_A, ORG_B] {
                assert!(!bytes.windows(org.len()).any(|w| w == org.as_bytes()));
            }
        }
    }

    #[test]
    fn an_unmatched_record_writes_nulls_and_empty_lists() {
        let mut r = DecisionRecord::new(Outcome::Unmatched, "no_provider");
        r.stripped_tokens = 1;
        let decoded = read_struct(&r.encode());
        for key in [
            "provider",
            "status",
            "contract_version",
            "subject",
            "issuer",
            "kid",
            "alg",
        ] {
            assert_eq!(get(&decoded, key), &Decoded::Null, "{key}");
        }
        assert_eq!(
            get(&decoded, "decision"),
            &Decoded::Text("unmatched".into())
        );
        assert_eq!(get(&decoded, "released"), &Decoded::Seq(vec![]));
        assert_eq!(
            get(&decoded, "attributes"),
            &Decoded::Map(vec![
                ("role_codes".into(), Decoded::Seq(vec![])),
                ("organisations".into(), Decoded::Seq(vec![])),
                ("org_roles".into(), Decoded::Seq(vec![])),
            ])
        );
    }

    #[test]
    fn a_refusal_carries_its_status_as_a_number() {
        let mut r = DecisionRecord::new(Outcome::Deny, "organisation_not_permitted");
        r.status = Some(403);
        let decoded = read_struct(&r.encode());
        assert_eq!(get(&decoded, "status"), &Decoded::Number(403.0));
        assert_eq!(get(&decoded, "decision"), &Decoded::Text("deny".into()));
    }

    #[test]
    fn the_declaration_names_a_protobuf_struct_property_for_the_filter_chain() {
        for readonly in [false, true] {
            let bytes = declare_property_arguments(PROPERTY, readonly);
            let fields = read_fields(&bytes);
            let mut expected = vec![(1, Wire::Bytes(b"mpass_guard".as_slice()))];
            if readonly {
                expected.push((2, Wire::Varint(1)));
            }
            expected.push((3, Wire::Varint(3)));
            expected.push((4, Wire::Bytes(STRUCT_SCHEMA.as_bytes())));
            // No field 5: span FilterChain is the proto3 default.
            assert_eq!(fields, expected);
        }
    }
}
