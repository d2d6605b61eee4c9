//! The decision record's encoder for the request path: it writes the record
//! straight from borrowed [`Parts`] into one buffer of the exact size, with
//! no [`Value`](super::Value) tree, no owned string and, for a record
//! without RBAC values, no allocation besides the output.
//!
//! Its bytes are those of the reference, [`super::encode_struct`] of
//! [`DecisionRecord::to_fields`](super::DecisionRecord::to_fields): the same
//! keys in the same order, the same values, the same minimal lengths. The
//! tests compare the two on every kind of record; should the writer ever
//! disagree with its own sizing, the reference encodes the record instead.

use std::cmp::Ordering;
use std::rc::Rc;

use super::{delimited_len, tag, DecisionRecord, Outcome, ShadowRecord, LEN, VARINT};
use crate::claims::{self, OrgScope};
use crate::few::Few;

/// A name in one of the record's lists: an attribute, a kind of change.
pub trait Name: Copy {
    /// The text written.
    fn name(self) -> &'static str;
}

impl Name for &'static str {
    fn name(self) -> &'static str {
        self
    }
}

impl Name for crate::shadow::Change {
    fn name(self) -> &'static str {
        crate::shadow::Change::name(self)
    }
}

/// Everything the record says, borrowed from where it lives (an
/// [`Audit`](crate::engine::Audit) or a [`DecisionRecord`]). `V` holds one
/// attribute's released values, `C` names a kind of shadow difference.
#[derive(Debug, Clone)]
pub struct Parts<'a, V, C> {
    pub provider: Option<&'a str>,
    pub decision: Outcome,
    pub reason: &'a str,
    pub status: Option<u16>,
    pub released: &'a [&'a str],
    pub withheld: &'a [&'a str],
    pub contract_version: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub issuer: Option<&'a str>,
    pub kid: Option<&'a str>,
    pub alg: Option<&'a str>,
    pub stripped_tokens: u32,
    /// Released values by attribute name; filtered as in
    /// [`DecisionRecord::attributes`] when written.
    pub released_values: &'a [(&'a str, V)],
    pub shadow: Option<ShadowParts<'a, C>>,
}

/// The `shadow` part of [`Parts`].
#[derive(Debug, Clone)]
pub struct ShadowParts<'a, C> {
    pub decision: &'static str,
    pub reason: &'static str,
    pub contract_version: &'a str,
    pub added: &'a [&'static str],
    pub removed: &'a [&'static str],
    pub changed: &'a [&'static str],
    pub changes: &'a [C],
}

/// One string of the `attributes` lists: `text`, then, with a code, `:`
/// (when `text` is not empty) and the code in decimal. A role code is
/// `("", Some(code))`, an organisation `(oid, None)`, a pair
/// `(oid, Some(code))`. `list` says which list (0, 1, 2): the three lists
/// share one vector, sorted by list, then by their text's bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Item<'a> {
    list: u8,
    text: &'a str,
    code: Option<u8>,
}

impl Item<'_> {
    /// The code's decimal digits (at most three) and how many there are.
    fn digits(self) -> ([u8; 3], usize) {
        match self.code {
            None => ([0; 3], 0),
            Some(c) if c >= 100 => ([b'0' + c / 100, b'0' + c / 10 % 10, b'0' + c % 10], 3),
            Some(c) if c >= 10 => ([b'0' + c / 10, b'0' + c % 10, 0], 2),
            Some(c) => ([b'0' + c, 0, 0], 1),
        }
    }

    /// The bytes after `text`: `:` and the digits.
    fn suffix(self) -> ([u8; 4], usize) {
        let (digits, n) = self.digits();
        let mut out = [0; 4];
        let mut len = 0;
        if n > 0 && !self.text.is_empty() {
            out[0] = b':';
            len = 1;
        }
        for d in digits.iter().take(n) {
            if let Some(slot) = out.get_mut(len) {
                *slot = *d;
            }
            len += 1;
        }
        (out, len)
    }

    fn len(self) -> usize {
        self.text.len() + self.suffix().1
    }

    /// The order of the text as one string (what sorting the `String`s of
    /// [`DecisionRecord::attributes`] gives).
    fn cmp_text(self, other: Item<'_>) -> Ordering {
        let (a, b) = (self.text.as_bytes(), other.text.as_bytes());
        let common = a.len().min(b.len());
        let head = a.get(..common).cmp(&b.get(..common));
        if head != Ordering::Equal {
            return head;
        }
        // One text is a prefix of the other: the rest decides, suffix included.
        let (sa, na) = self.suffix();
        let (sb, nb) = other.suffix();
        let rest_a = a.get(common..).unwrap_or_default().iter();
        let rest_b = b.get(common..).unwrap_or_default().iter();
        rest_a
            .chain(sa.iter().take(na))
            .cmp(rest_b.chain(sb.iter().take(nb)))
    }
}

/// The items of one record's `attributes`: inline up to this many (two
/// roles and two provider infos make eight).
type Items<'a> = Few<Item<'a>, 16>;

/// The `attributes` lists of `parts`, sorted and without duplicates, in one
/// list (see [`Item`]).
fn rbac_items<'a, V: AsRef<[String]>, C>(parts: &Parts<'a, V, C>) -> Items<'a> {
    let mut items = Items::new();
    for (name, values) in parts.released_values {
        // The same check as `DecisionRecord::attributes`, at the point of
        // use: a value of an unreleased or withheld attribute never counts.
        if !parts.released.contains(name) || parts.withheld.contains(name) {
            continue;
        }
        let Some((attr, _)) = claims::lookup(name) else {
            continue;
        };
        let values = values.as_ref();
        match attr.scope {
            OrgScope::Role => {
                for role in values.iter().filter_map(|v| claims::parse_role(v)) {
                    let provider = role.provider.trim();
                    let provider_ok = claims::is_organisation_oid(provider);
                    if provider_ok {
                        items.push(Item {
                            list: 1,
                            text: provider,
                            code: None,
                        });
                    }
                    if let Some(code) = role.code {
                        items.push(Item {
                            list: 0,
                            text: "",
                            code: Some(code),
                        });
                        if provider_ok {
                            items.push(Item {
                                list: 2,
                                text: provider,
                                code: Some(code),
                            });
                        }
                    }
                }
            }
            OrgScope::ProviderInfo => {
                for v in values {
                    let oid = v.split(';').next().unwrap_or_default().trim();
                    if claims::is_organisation_oid(oid) {
                        items.push(Item {
                            list: 1,
                            text: oid,
                            code: None,
                        });
                    }
                }
            }
            _ => {}
        }
    }
    items
        .as_mut_slice()
        .sort_unstable_by(|a, b| a.list.cmp(&b.list).then_with(|| a.cmp_text(*b)));
    items.dedup();
    items
}

const NULL_LEN: usize = 2;
const NUMBER_LEN: usize = 9;

/// The body length of a `string_value`.
fn text_len(len: usize) -> usize {
    delimited_len(len)
}

fn opt_len(s: Option<&str>) -> usize {
    s.map_or(NULL_LEN, |s| text_len(s.len()))
}

/// A `Struct` field (map entry) of `key` whose value body is `value` bytes.
fn field_len(key: &str, value: usize) -> usize {
    delimited_len(entry_len(key, value))
}

fn entry_len(key: &str, value: usize) -> usize {
    delimited_len(key.len()) + delimited_len(value)
}

/// The `ListValue` body of strings of these lengths.
fn list_body(lens: impl Iterator<Item = usize>) -> usize {
    lens.map(|n| delimited_len(text_len(n))).sum()
}

fn names_body<'n>(names: impl IntoIterator<Item = &'n str>) -> usize {
    list_body(names.into_iter().map(str::len))
}

/// A cursor over the output; it records, rather than panics, a write past
/// the end.
struct Out<'b> {
    buf: &'b mut [u8],
    pos: usize,
    fits: bool,
}

impl Out<'_> {
    fn byte(&mut self, b: u8) {
        match self.buf.get_mut(self.pos) {
            Some(slot) => {
                *slot = b;
                self.pos += 1;
            }
            None => self.fits = false,
        }
    }

    fn bytes(&mut self, b: &[u8]) {
        let end = self.pos.saturating_add(b.len());
        match self.buf.get_mut(self.pos..end) {
            Some(dst) => {
                dst.copy_from_slice(b);
                self.pos = end;
            }
            None => self.fits = false,
        }
    }

    fn varint(&mut self, mut n: usize) {
        while n >= 0x80 {
            // Truncation is the point: the low seven bits, with the
            // continuation bit.
            self.byte((n as u8 & 0x7f) | 0x80);
            n >>= 7;
        }
        self.byte(n as u8);
    }

    /// A map entry's head: its tag and length, the key, the value's tag
    /// and length; the value body follows.
    fn field(&mut self, key: &str, value: usize) {
        self.byte(tag(1, LEN));
        self.varint(entry_len(key, value));
        self.byte(tag(1, LEN));
        self.varint(key.len());
        self.bytes(key.as_bytes());
        self.byte(tag(2, LEN));
        self.varint(value);
    }

    fn null(&mut self) {
        self.bytes(&[tag(1, VARINT), 0]);
    }

    fn number(&mut self, n: f64) {
        self.byte(tag(2, super::I64));
        self.bytes(&n.to_le_bytes());
    }

    fn text(&mut self, s: &str) {
        self.byte(tag(3, LEN));
        self.varint(s.len());
        self.bytes(s.as_bytes());
    }

    fn opt(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.text(s),
            None => self.null(),
        }
    }

    /// A `list_value` head; the items follow.
    fn list(&mut self, body: usize) {
        self.byte(tag(6, LEN));
        self.varint(body);
    }

    /// One string item of a list: a `Value` holding a `string_value`.
    fn item(&mut self, s: &str) {
        self.byte(tag(1, LEN));
        self.varint(text_len(s.len()));
        self.text(s);
    }

    fn names<'n>(&mut self, key: &str, names: impl IntoIterator<Item = &'n str>, body: usize) {
        self.field(key, delimited_len(body));
        self.list(body);
        for n in names {
            self.item(n);
        }
    }

    fn rbac_list(&mut self, key: &str, items: &[Item<'_>], body: usize) {
        self.field(key, delimited_len(body));
        self.list(body);
        for it in items {
            let len = it.len();
            self.byte(tag(1, LEN));
            self.varint(text_len(len));
            self.byte(tag(3, LEN));
            self.varint(len);
            self.bytes(it.text.as_bytes());
            let (suffix, n) = it.suffix();
            self.bytes(suffix.get(..n).unwrap_or_default());
        }
    }

    /// A `struct_value` head; the fields follow.
    fn start_struct(&mut self, body: usize) {
        self.byte(tag(5, LEN));
        self.varint(body);
    }
}

/// The three `attributes` lists: where each starts in the items, and the
/// `ListValue` body length of each.
struct Rbac<'a> {
    items: Items<'a>,
    ends: [usize; 3],
    bodies: [usize; 3],
}

impl<'a> Rbac<'a> {
    fn new(items: Items<'a>) -> Rbac<'a> {
        let mut ends = [0; 3];
        let mut bodies = [0; 3];
        for it in &items {
            let i = usize::from(it.list);
            if let (Some(end), Some(body)) = (ends.get_mut(i), bodies.get_mut(i)) {
                *end += 1;
                *body += delimited_len(text_len(it.len()));
            }
        }
        ends[1] += ends[0];
        ends[2] += ends[1];
        Rbac {
            items,
            ends,
            bodies,
        }
    }

    /// List `i`'s items and `ListValue` body length.
    fn list(&self, i: usize) -> (&[Item<'a>], usize) {
        let start = i.checked_sub(1).and_then(|j| self.ends.get(j)).copied();
        let end = self.ends.get(i).copied().unwrap_or_default();
        let items = self.items.get(start.unwrap_or(0)..end).unwrap_or_default();
        (items, self.bodies.get(i).copied().unwrap_or_default())
    }

    fn body(&self) -> usize {
        field_len("role_codes", delimited_len(self.bodies[0]))
            + field_len("organisations", delimited_len(self.bodies[1]))
            + field_len("org_roles", delimited_len(self.bodies[2]))
    }
}

/// The list bodies of the shadow part and its struct body.
struct ShadowSizes {
    lists: [usize; 4],
    body: usize,
}

fn shadow_sizes<C: Name>(s: &ShadowParts<'_, C>) -> ShadowSizes {
    let lists = [
        names_body(s.added.iter().copied()),
        names_body(s.removed.iter().copied()),
        names_body(s.changed.iter().copied()),
        names_body(s.changes.iter().map(|c| c.name())),
    ];
    let body = field_len("decision", text_len(s.decision.len()))
        + field_len("reason", text_len(s.reason.len()))
        + field_len("contract_version", text_len(s.contract_version.len()))
        + field_len("added", delimited_len(lists[0]))
        + field_len("removed", delimited_len(lists[1]))
        + field_len("changed", delimited_len(lists[2]))
        + field_len("changes", delimited_len(lists[3]));
    ShadowSizes { lists, body }
}

impl<'a, V: AsRef<[String]>, C: Name> Parts<'a, V, C> {
    /// The serialized record, as [`DecisionRecord::encode`] gives it.
    pub fn encode(&self) -> Vec<u8> {
        let sized = Sized::of(self);
        let mut out = vec![0; sized.total];
        if sized.write(self, &mut out) {
            return out;
        }
        self.reference()
    }

    /// The same bytes in a shared buffer, allocated once at their size.
    pub fn encode_shared(&self) -> Rc<[u8]> {
        let sized = Sized::of(self);
        let mut shared: Rc<[u8]> = std::iter::repeat_n(0, sized.total).collect();
        if let Some(buf) = Rc::get_mut(&mut shared) {
            if sized.write(self, buf) {
                return shared;
            }
        }
        self.reference().into()
    }

    /// The record through the reference encoder (the value tree).
    fn reference(&self) -> Vec<u8> {
        let values: Vec<(&str, &[String])> = self
            .released_values
            .iter()
            .map(|(n, v)| (*n, v.as_ref()))
            .collect();
        let record = DecisionRecord {
            provider: self.provider,
            decision: self.decision,
            reason: self.reason,
            status: self.status,
            released: self.released.to_vec(),
            withheld: self.withheld.to_vec(),
            contract_version: self.contract_version,
            subject: self.subject,
            issuer: self.issuer,
            kid: self.kid,
            alg: self.alg,
            stripped_tokens: self.stripped_tokens,
            released_values: values,
            shadow: self.shadow.as_ref().map(|s| ShadowRecord {
                decision: s.decision,
                reason: s.reason,
                contract_version: s.contract_version,
                added: s.added.to_vec(),
                removed: s.removed.to_vec(),
                changed: s.changed.to_vec(),
                changes: s.changes.iter().map(|c| c.name()).collect(),
            }),
        };
        super::encode_struct(&record.to_fields())
    }
}

/// The sizes of one record, computed once before it is written.
struct Sized<'a> {
    released: usize,
    withheld: usize,
    rbac: Rbac<'a>,
    attributes: usize,
    shadow: Option<ShadowSizes>,
    total: usize,
}

impl<'a> Sized<'a> {
    fn of<V: AsRef<[String]>, C: Name>(p: &Parts<'a, V, C>) -> Sized<'a> {
        let released = names_body(p.released.iter().copied());
        let withheld = names_body(p.withheld.iter().copied());
        let rbac = Rbac::new(rbac_items(p));
        let attributes = rbac.body();
        let shadow = p.shadow.as_ref().map(shadow_sizes);
        let total = field_len("provider", opt_len(p.provider))
            + field_len("decision", text_len(p.decision.as_str().len()))
            + field_len("reason", text_len(p.reason.len()))
            + field_len("status", p.status.map_or(NULL_LEN, |_| NUMBER_LEN))
            + field_len("released", delimited_len(released))
            + field_len("withheld", delimited_len(withheld))
            + field_len("contract_version", opt_len(p.contract_version))
            + field_len("subject", opt_len(p.subject))
            + field_len("issuer", opt_len(p.issuer))
            + field_len("kid", opt_len(p.kid))
            + field_len("alg", opt_len(p.alg))
            + field_len("stripped_tokens", NUMBER_LEN)
            + field_len("attributes", delimited_len(attributes))
            + field_len(
                "shadow",
                shadow.as_ref().map_or(NULL_LEN, |s| delimited_len(s.body)),
            );
        Sized {
            released,
            withheld,
            rbac,
            attributes,
            shadow,
            total,
        }
    }

    /// Writes the record into `buf`; whether it filled `buf` exactly.
    fn write<V, C: Name>(&self, p: &Parts<'_, V, C>, buf: &mut [u8]) -> bool {
        let mut out = Out {
            buf,
            pos: 0,
            fits: true,
        };
        out.field("provider", opt_len(p.provider));
        out.opt(p.provider);
        let decision = p.decision.as_str();
        out.field("decision", text_len(decision.len()));
        out.text(decision);
        out.field("reason", text_len(p.reason.len()));
        out.text(p.reason);
        match p.status {
            Some(s) => {
                out.field("status", NUMBER_LEN);
                out.number(f64::from(s));
            }
            None => {
                out.field("status", NULL_LEN);
                out.null();
            }
        }
        out.names("released", p.released.iter().copied(), self.released);
        out.names("withheld", p.withheld.iter().copied(), self.withheld);
        for (key, value) in [
            ("contract_version", p.contract_version),
            ("subject", p.subject),
            ("issuer", p.issuer),
            ("kid", p.kid),
            ("alg", p.alg),
        ] {
            out.field(key, opt_len(value));
            out.opt(value);
        }
        out.field("stripped_tokens", NUMBER_LEN);
        out.number(f64::from(p.stripped_tokens));
        out.field("attributes", delimited_len(self.attributes));
        out.start_struct(self.attributes);
        for (i, key) in ["role_codes", "organisations", "org_roles"]
            .into_iter()
            .enumerate()
        {
            let (items, body) = self.rbac.list(i);
            out.rbac_list(key, items, body);
        }
        match (&p.shadow, &self.shadow) {
            (Some(s), Some(sizes)) => {
                out.field("shadow", delimited_len(sizes.body));
                out.start_struct(sizes.body);
                for (key, value) in [
                    ("decision", s.decision),
                    ("reason", s.reason),
                    ("contract_version", s.contract_version),
                ] {
                    out.field(key, text_len(value.len()));
                    out.text(value);
                }
                out.names("added", s.added.iter().copied(), sizes.lists[0]);
                out.names("removed", s.removed.iter().copied(), sizes.lists[1]);
                out.names("changed", s.changed.iter().copied(), sizes.lists[2]);
                let changes = s.changes.iter().map(|c| c.name());
                out.names("changes", changes, sizes.lists[3]);
            }
            _ => {
                out.field("shadow", NULL_LEN);
                out.null();
            }
        }
        out.fits && out.pos == out.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference bytes: the value tree of `to_fields`.
    fn reference(r: &DecisionRecord<'_>) -> Vec<u8> {
        super::super::encode_struct(&r.to_fields())
    }

    fn assert_same(r: &DecisionRecord<'_>) {
        let expected = reference(r);
        assert_eq!(r.parts().encode(), expected, "{r:?}");
        assert_eq!(&*r.parts().encode_shared(), expected.as_slice(), "{r:?}");
    }

    const ORG: &str = "1.2.246.562.10.123";
    // An OID of which `ORG` is a prefix: as strings, `<ORG>4:2` sorts
    // before `<ORG>:2`, though `ORG` sorts before it.
    const ORG_LONGER: &str = "1.2.246.562.10.1234";

    /// Role and provider-info values of every shape the attributes read.
    fn values() -> Vec<String> {
        vec![
            format!("{ORG};30076;;Opettaja;2;1.2.246.562.10.11;"),
            format!("{ORG_LONGER};30077;;Rehtori;6;1.2.246.562.10.12;"),
            format!("{ORG_LONGER};30077;;Oppilas;1;1.2.246.562.10.12;"),
            format!("{ORG};30076;;Opettaja;2;1.2.246.562.10.11;"),
            format!(" {ORG} ;30076;;Rehtori;;x;"),
            format!("{ORG};30076;;Kokki;;x;"),
            format!("{ORG};30076;;Rehtori"),
            "1.2.246.562.99.77;1;;Sijaisopettaja;5;;".to_owned(),
            "not-an-oid;30076;;Opettaja;2;;".to_owned(),
            "too;few".to_owned(),
            String::new(),
            format!("{ORG_LONGER};Esimerkkilä"),
            format!("1.2.246.562.10.{};x;;Opettaja;3;;", "9".repeat(200)),
        ]
    }

    /// A small deterministic generator, so the shapes below vary without
    /// a test dependency.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self, n: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) as usize % n.max(1)
        }
    }

    const NAMES: [&str; 6] = [
        claims::ROLE,
        "urn:mpass.id:educationProviderInfo",
        "given_name",
        "email",
        "never_releasable",
        "urn:x:no-such-attribute",
    ];

    #[test]
    fn the_writer_gives_the_reference_bytes_for_every_shape_of_record() {
        let pool = values();
        let long = "ä".repeat(100);
        let texts = ["", "k1", "RS256", "2026-11", "p:4f2a", long.as_str()];
        let changes = ["would_allow", "added", "removed", "values"];
        let mut rng = Lcg(16);
        for round in 0..2_000 {
            let outcome = [Outcome::Allow, Outcome::Deny, Outcome::Unmatched][rng.next(3)];
            let mut r = DecisionRecord::new(outcome, texts[rng.next(texts.len())]);
            let pick = |rng: &mut Lcg| match rng.next(texts.len() + 1) {
                0 => None,
                i => Some(texts[i - 1]),
            };
            r.provider = pick(&mut rng);
            r.contract_version = pick(&mut rng);
            r.subject = pick(&mut rng);
            r.issuer = pick(&mut rng);
            r.kid = pick(&mut rng);
            r.alg = pick(&mut rng);
            r.status = [None, Some(401), Some(403), Some(0), Some(u16::MAX)][rng.next(5)];
            r.stripped_tokens = [0, 1, 7, u32::MAX][rng.next(4)];
            for _ in 0..rng.next(5) {
                r.released.push(NAMES[rng.next(NAMES.len())]);
            }
            for _ in 0..rng.next(3) {
                r.withheld.push(NAMES[rng.next(NAMES.len())]);
            }
            let sets: Vec<Vec<String>> = (0..3)
                .map(|_| {
                    (0..rng.next(6))
                        .map(|_| pool[rng.next(pool.len())].clone())
                        .collect()
                })
                .collect();
            for set in &sets {
                if rng.next(2) == 0 {
                    r.released_values.push((NAMES[rng.next(3)], set));
                }
            }
            if round % 3 == 0 {
                let list = |rng: &mut Lcg| -> Vec<&'static str> {
                    (0..rng.next(4))
                        .map(|_| NAMES[rng.next(NAMES.len())])
                        .collect()
                };
                r.shadow = Some(ShadowRecord {
                    decision: ["allow", "deny"][rng.next(2)],
                    reason: ["ok", "organisation_not_permitted"][rng.next(2)],
                    contract_version: texts[rng.next(texts.len())],
                    added: list(&mut rng),
                    removed: list(&mut rng),
                    changed: list(&mut rng),
                    changes: (0..rng.next(4))
                        .map(|_| changes[rng.next(changes.len())])
                        .collect(),
                });
            }
            assert_same(&r);
        }
    }

    #[test]
    fn organisation_pairs_sort_as_strings_where_one_oid_prefixes_another() {
        let roles = vec![
            format!("{ORG};1;;Opettaja;2;;"),
            format!("{ORG_LONGER};1;;Opettaja;2;;"),
        ];
        let mut r = DecisionRecord::new(Outcome::Allow, "ok");
        r.released = vec![claims::ROLE];
        r.released_values = vec![(claims::ROLE, &roles)];
        let a = r.attributes();
        assert_eq!(a.organisations, [ORG, ORG_LONGER]);
        assert_eq!(a.org_roles, [format!("{ORG_LONGER}:2"), format!("{ORG}:2")]);
        assert_same(&r);
    }

    #[test]
    fn lists_and_strings_past_one_and_two_length_bytes_match_the_reference() {
        // 20 000 names: list bodies need three length bytes.
        let many = vec!["given_name"; 20_000];
        let huge = "x".repeat(20_000);
        let mut r = DecisionRecord::new(Outcome::Allow, &huge);
        r.provider = Some(&huge);
        r.released = many.clone();
        r.withheld = many;
        assert_same(&r);
    }

    #[test]
    fn a_buffer_of_another_size_is_refused_rather_than_overrun() {
        let roles = values();
        let mut r = DecisionRecord::new(Outcome::Allow, "ok");
        r.released = vec![claims::ROLE];
        r.released_values = vec![(claims::ROLE, &roles)];
        let parts = r.parts();
        let sized = Sized::of(&parts);
        let mut exact = vec![0; sized.total];
        assert!(sized.write(&parts, &mut exact));
        assert_eq!(exact, reference(&r));
        for len in [0, sized.total - 1, sized.total + 1] {
            assert!(!sized.write(&parts, &mut vec![0; len]), "{len}");
        }
    }
}
