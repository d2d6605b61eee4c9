//! Request routing: which provider a request goes to.
//!
//! [`config`](crate::config) builds a [`Matcher`] at load with a
//! [`MatcherBuilder`]; the engine asks it for each request. Path and
//! authority normalisation live here because only matching uses them.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::authority::Authority;
use crate::error::{index, join, ConfigError};
use crate::http::{percent_decode_ascii_where, percent_decode_unreserved};

/// A provider, by its position in the compiled configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProviderId(pub(crate) usize);

impl ProviderId {
    /// The position, for tables indexed like the providers.
    pub fn index(self) -> usize {
        self.0
    }
}

/// One provider's `match` rule, as written, and its public prefixes.
#[derive(Debug, Clone, Copy)]
pub struct MatchRule<'a> {
    pub authorities: &'a [String],
    pub path_prefixes: &'a [String],
    pub route_names: &'a [String],
    /// Sub-paths of the provider that pass without a token (still sanitised).
    pub public_prefixes: &'a [String],
}

/// Whose request it is: the one classification the engine sanitises and
/// decides by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// No provider: the `unmatched` policy applies (sanitised).
    None,
    /// This provider's protected path.
    Provider(ProviderId),
    /// One of this provider's public prefixes: passes without a token.
    Public(ProviderId),
    /// The raw and the normalised path match different providers.
    Conflict,
    /// `:authority` is not a host and an optional port.
    InvalidAuthority,
}
/// The hasher of tables built from the configuration at load (routes,
/// identity header names): an FxHash-style multiply-rotate over eight bytes
/// at a time, a fraction of SipHash's cost on every request. Unkeyed on
/// purpose: a table nobody can add to at request time cannot be flooded
/// (HashDoS needs inserted keys that collide), and a lookup of any key
/// costs at most the probe sequence the fixed table already has. Never for
/// a map that grows with what requests carry: the token cache is keyed
/// with a per-VM random SipHash key (`cache::KeyHasher`).
#[derive(Debug, Default, Clone, Copy)]
pub struct TableHasher(u64);

/// [`TableHasher`] for `HashMap` and `HashSet`.
pub type Tables = BuildHasherDefault<TableHasher>;

impl TableHasher {
    const K: u64 = 0xf135_7aea_2e62_a9c5;

    fn add(&mut self, word: u64) {
        self.0 = (self.0 ^ word).wrapping_mul(Self::K).rotate_left(26);
    }
}

impl Hasher for TableHasher {
    fn write(&mut self, bytes: &[u8]) {
        let words = bytes.chunks_exact(8);
        let tail = words.remainder();
        for w in words {
            self.add(w.try_into().map_or(0, u64::from_le_bytes));
        }
        if !tail.is_empty() {
            let mut last = [0u8; 8];
            if let Some(dst) = last.get_mut(..tail.len()) {
                dst.copy_from_slice(tail);
            }
            // The length joins the last word: "a" and "a\0" differ.
            self.add(u64::from_le_bytes(last) ^ ((tail.len() as u64) << 56));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        // hashbrown takes its control tag from the top seven bits.
        self.0.wrapping_mul(Self::K)
    }
}

/// Finds the provider a request goes to. Precedence: Envoy route name, then
/// authority with the longest path prefix, then any authority with the
/// longest path prefix. Lookups are hash lookups, one per distinct prefix
/// length, so the cost does not grow with the number of providers.
#[derive(Debug, Default)]
pub struct Matcher {
    by_route: HashMap<String, ProviderId, Tables>,
    /// Per provider (by index), its public prefixes as written.
    public: Vec<Vec<String>>,
    /// authority ("" for any) -> path prefix ("" for any) -> provider.
    by_authority: HashMap<String, HashMap<String, ProviderId, Tables>, Tables>,
    /// Distinct prefix lengths, longest first.
    lengths: Vec<usize>,
    /// Whether any provider matches on route names (saves a host call).
    pub uses_route_names: bool,
}

/// Builds a [`Matcher`] one provider at a time, refusing overlaps.
#[derive(Debug, Default)]
pub struct MatcherBuilder {
    m: Matcher,
}

impl MatcherBuilder {
    /// Adds `provider`'s rule; `path` is the rule's configuration path.
    pub fn add(
        &mut self,
        mc: &MatchRule<'_>,
        provider: ProviderId,
        path: &str,
    ) -> Result<(), ConfigError> {
        for (i, p) in mc.public_prefixes.iter().enumerate() {
            if !p.starts_with('/') || p.contains(['?', '#', ';', '%']) || normalise_path(p) != *p {
                return Err(ConfigError::new(
                    index(&join(path, "public_prefixes"), i),
                    "must start with '/', be normalised and hold no query, fragment, ';' or '%'",
                ));
            }
        }
        let at = provider.index();
        if self.m.public.len() <= at {
            self.m.public.resize_with(at + 1, Vec::new);
        }
        if let Some(slot) = self.m.public.get_mut(at) {
            *slot = mc.public_prefixes.to_vec();
        }
        if mc.authorities.is_empty() && mc.path_prefixes.is_empty() && mc.route_names.is_empty() {
            return Err(ConfigError::new(
                path,
                "give at least one of authorities, path_prefixes, route_names",
            ));
        }
        for (i, r) in mc.route_names.iter().enumerate() {
            let p = index(&join(path, "route_names"), i);
            if r.is_empty() {
                return Err(ConfigError::new(p, "must not be empty"));
            }
            if self.m.by_route.insert(r.clone(), provider).is_some() {
                return Err(ConfigError::new(
                    p,
                    "route name already used by another provider",
                ));
            }
            self.m.uses_route_names = true;
        }
        if mc.authorities.is_empty() && mc.path_prefixes.is_empty() {
            return Ok(());
        }
        let mut authorities = Vec::new();
        for (i, a) in mc.authorities.iter().enumerate() {
            match Authority::parse(a) {
                Ok(parsed) if !parsed.host.is_empty() => authorities.push((parsed.key(), i)),
                _ => {
                    return Err(ConfigError::new(
                        index(&join(path, "authorities"), i),
                        "not a host[:port] (a name or IP address, a port of 1-65535 without leading zeros)",
                    ))
                }
            }
        }
        if authorities.is_empty() {
            authorities.push((String::new(), 0));
        }
        let mut prefixes = Vec::new();
        for (i, p) in mc.path_prefixes.iter().enumerate() {
            if !p.starts_with('/') || p.contains('?') || p.contains('#') {
                return Err(ConfigError::new(
                    index(&join(path, "path_prefixes"), i),
                    "must start with '/' and hold no query or fragment",
                ));
            }
            prefixes.push((p.clone(), i));
        }
        if prefixes.is_empty() {
            prefixes.push((String::new(), 0));
        }
        for (a, ai) in &authorities {
            for (p, pi) in &prefixes {
                let slot = self.m.by_authority.entry(a.clone()).or_default();
                if slot.insert(p.clone(), provider).is_some() {
                    let at = if mc.path_prefixes.is_empty() {
                        index(&join(path, "authorities"), *ai)
                    } else {
                        index(&join(path, "path_prefixes"), *pi)
                    };
                    return Err(ConfigError::new(
                        at,
                        "another provider already matches this authority and path",
                    ));
                }
                if !self.m.lengths.contains(&p.len()) {
                    self.m.lengths.push(p.len());
                }
            }
        }
        Ok(())
    }

    /// The finished matcher.
    pub fn build(mut self) -> Matcher {
        self.m.lengths.sort_unstable_by(|a, b| b.cmp(a));
        self.m
    }
}

impl Matcher {
    /// Whose request it is (`path` may carry a query). The authority is
    /// parsed strictly ([`Authority::parse`]): a malformed one is
    /// [`Lookup::InvalidAuthority`]. The path is matched both as a
    /// normalising upstream reads it (so `//shop/x`, `/shop;jsessionid=1/x`
    /// or `/public/../shop/x` cannot slip past the `/shop/` provider when
    /// Envoy does not normalise) and as sent, with only `;` segment
    /// parameters dropped and unreserved escapes decoded (so
    /// `/shop/../public` still needs a token): matching more is the safe
    /// direction. When the two belong to different providers (`/a/../b/x`),
    /// Envoy may route the raw path to one service while the token and the
    /// release would be the other's, so the answer is [`Lookup::Conflict`].
    /// A route-name match is Envoy's decision on the path as sent, so it is
    /// trusted only when normalising changes nothing or the normalised path
    /// is that provider's too. A matched provider's public prefixes are
    /// compared with the normalised path.
    pub fn find_checked(&self, authority: &str, path: &str, route_name: Option<&str>) -> Lookup {
        let Ok(authority) = Authority::parse(authority) else {
            return Lookup::InvalidAuthority;
        };
        let key = authority.key();
        let path = path.split(['?', '#']).next().unwrap_or_default();
        // A path already normal (the usual case) is its own normal and
        // match form (it holds no `%` or `;`): no copies.
        let (normalised, raw) = if is_normal(path) {
            (Cow::Borrowed(path), Cow::Borrowed(path))
        } else {
            (
                Cow::Owned(normalise_path(path)),
                Cow::Owned(match_form(path)),
            )
        };
        let found = match route_name.and_then(|r| self.by_route.get(r)) {
            Some(&r) => {
                if raw != normalised && self.find_path(&key, &normalised) != Some(r) {
                    return Lookup::Conflict;
                }
                r
            }
            // The same path twice (the usual case) is looked up once.
            None if raw == normalised => match self.find_path(&key, &normalised) {
                Some(a) => a,
                None => return Lookup::None,
            },
            None => match (
                self.find_path(&key, &normalised),
                self.find_path(&key, &raw),
            ) {
                (Some(a), Some(b)) if a != b => return Lookup::Conflict,
                (Some(a), _) | (None, Some(a)) => a,
                (None, None) => return Lookup::None,
            },
        };
        let public = self
            .public
            .get(found.index())
            .is_some_and(|prefixes| prefixes.iter().any(|p| normalised.starts_with(p.as_str())));
        if public {
            Lookup::Public(found)
        } else {
            Lookup::Provider(found)
        }
    }

    fn find_path(&self, authority: &str, path: &str) -> Option<ProviderId> {
        for auth in [authority, ""] {
            if let Some(prefixes) = self.by_authority.get(auth) {
                for &len in &self.lengths {
                    if let Some(p) = path.get(..len).and_then(|p| prefixes.get(p)) {
                        return Some(*p);
                    }
                }
            }
        }
        None
    }
}

/// A path as sent, for matching: `;` segment parameters dropped (Tomcat
/// and Jetty serve `/shop;jsessionid=1/x` as `/shop/x`) and escapes of
/// unreserved characters decoded (`/sh%6fp` is `/shop`, RFC 3986 section
/// 6.2.2.2); nothing else changes.
pub fn match_form(path: &str) -> String {
    // Nothing to decode or drop: the path as it is (one copy, not three).
    if !path.contains(['%', ';']) {
        return path.to_owned();
    }
    without_segment_params(&percent_decode_unreserved(path))
}

fn without_segment_params(path: &str) -> String {
    if !path.contains(';') {
        return path.to_owned();
    }
    path.split('/')
        .map(|seg| seg.split(';').next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("/")
}

/// A request path (without query) as an upstream that normalises paths
/// would read it: `%2E`, `%2F`, `%5C` and unreserved escapes decoded, `\`
/// read as `/`, `;` segment parameters dropped, repeated slashes merged and
/// `.` / `..` segments removed (RFC 3986 section 5.2.4). Used for provider
/// matching only; Envoy's own `normalize_path` and `merge_slashes` should
/// still be on (see SECURITY.md).
pub fn normalise_path(path: &str) -> String {
    // Most paths are already in that form: no escape, `\` or `;` to read,
    // no empty, `.` or `..` segment. Returned as they are, which is what the
    // whole normalisation below gives for them (tested exhaustively over
    // short paths), without its five allocations.
    if is_normal(path) {
        return path.to_owned();
    }
    normalise_path_in_full(path)
}

/// True when [`normalise_path_in_full`] returns `path` unchanged because
/// there is nothing in it to normalise: it starts with `/`, holds no `%`,
/// `\` or `;`, and no segment is `.` or `..` or empty (but the last, after
/// a trailing slash).
fn is_normal(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    if rest.contains(['%', '\\', ';']) {
        return false;
    }
    let mut segments = rest.split('/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        if seg == "." || seg == ".." || (seg.is_empty() && !last) {
            return false;
        }
    }
    true
}

fn normalise_path_in_full(path: &str) -> String {
    let decoded = percent_decode_ascii_where(path, |c| {
        matches!(c, b'.' | b'/' | b'\\') || crate::http::is_unreserved(c)
    });
    let decoded = without_segment_params(&decoded.replace('\\', "/"));
    let mut segments: Vec<&str> = Vec::new();
    let raw: Vec<&str> = decoded.split('/').collect();
    for seg in &raw {
        match *seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for seg in &segments {
        out.push('/');
        out.push_str(seg);
    }
    let trailing = matches!(raw.last(), Some(&"" | &"." | &".."));
    if trailing || out.is_empty() {
        out.push('/');
    }
    out
}

/// Lowercases, drops a trailing dot and the default ports 80 and 443.
pub fn normalise_authority(a: &str) -> String {
    let mut s = a.trim().to_ascii_lowercase();
    for port in [":80", ":443"] {
        if let Some(stripped) = s.strip_suffix(port) {
            s = stripped.to_owned();
            break;
        }
    }
    if let Some(stripped) = s.strip_suffix('.') {
        s = stripped.to_owned();
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn the_table_hasher_tells_apart_names_that_share_bytes() {
        use std::hash::BuildHasher;
        let names = [
            "",
            "a",
            "a\0",
            "/",
            "/shop",
            "/shop/",
            "/shop/x",
            "/shop/y",
            "12345678",
            "12345678\0",
            "123456789",
            "x-mpass-uid",
            "x-mpass-uie",
            "authorization",
        ];
        let hashes: std::collections::BTreeSet<u64> = names
            .iter()
            .map(|n| Tables::default().hash_one(n))
            .collect();
        assert_eq!(hashes.len(), names.len());
        // And the top seven bits (hashbrown's tag) are not all alike.
        let tags: std::collections::BTreeSet<u64> = hashes.iter().map(|h| h >> 57).collect();
        assert!(tags.len() > names.len() / 2, "{tags:?}");
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    /// shop: authority; pathshop: `/shop/` with public prefixes; library:
    /// a route name; tls: an authority with a port.
    fn matcher() -> Matcher {
        let mut b = MatcherBuilder::default();
        let rules = [
            (s(&["shop.studeo.example"]), s(&[]), s(&[]), s(&[])),
            (
                s(&[]),
                s(&["/shop/"]),
                s(&[]),
                s(&["/shop/static/", "/shop/healthz"]),
            ),
            (s(&[]), s(&[]), s(&["library-route"]), s(&[])),
            (s(&["tls.example:8443"]), s(&[]), s(&[]), s(&[])),
        ];
        for (i, (a, p, r, public)) in rules.iter().enumerate() {
            let rule = MatchRule {
                authorities: a,
                path_prefixes: p,
                route_names: r,
                public_prefixes: public,
            };
            b.add(&rule, ProviderId(i), "m").unwrap();
        }
        b.build()
    }

    #[test]
    fn a_path_taken_as_already_normal_is_exactly_what_the_full_normalisation_gives() {
        // Every path of up to 6 characters over the characters that matter
        // to the normalisation (and one that does not).
        const ALPHABET: [char; 8] = ['/', '.', 'a', '%', '2', 'E', ';', '\\'];
        let mut paths = vec![String::new()];
        let mut normal = 0;
        for _ in 0..6 {
            let mut longer = Vec::with_capacity(paths.len() * ALPHABET.len());
            for p in &paths {
                for c in ALPHABET {
                    let mut q = p.clone();
                    q.push(c);
                    if is_normal(&q) {
                        normal += 1;
                        assert_eq!(normalise_path_in_full(&q), q, "{q:?}");
                    }
                    assert_eq!(normalise_path(&q), normalise_path_in_full(&q), "{q:?}");
                    assert_eq!(
                        match_form(&q),
                        without_segment_params(&crate::http::percent_decode_unreserved(&q)),
                        "{q:?}"
                    );
                    longer.push(q);
                }
            }
            paths = longer;
        }
        // The fast path is taken at all (e.g. `/a/a/`, `/`).
        assert!(normal > 100, "{normal}");
        assert!(is_normal("/") && is_normal("/bench/") && is_normal("/p/5000/x"));
        assert!(!is_normal("") && !is_normal("//x") && !is_normal("/x/..") && !is_normal("/a/./b"));
    }

    const SHOP: Lookup = Lookup::Provider(ProviderId(0));
    const PATHSHOP: Lookup = Lookup::Provider(ProviderId(1));

    #[test]
    fn a_malformed_authority_is_refused_never_passed_through() {
        let m = matcher();
        for a in [
            "shop.studeo.example:",
            "shop.studeo.example:0443",
            "user@shop.studeo.example",
            "[shop.studeo.example]",
            "..",
            "shop.studeo.example:abc",
        ] {
            assert_eq!(
                m.find_checked(a, "/x", None),
                Lookup::InvalidAuthority,
                "{a}"
            );
        }
    }

    #[test]
    fn an_authority_without_a_port_matches_no_port_80_and_443_only() {
        let m = matcher();
        for a in [
            "shop.studeo.example",
            "SHOP.studeo.example.",
            "shop.studeo.example:443",
            "shop.studeo.example:80",
        ] {
            assert_eq!(m.find_checked(a, "/x", None), SHOP, "{a}");
        }
        assert_eq!(
            m.find_checked("shop.studeo.example:8443", "/x", None),
            Lookup::None
        );
        assert_eq!(
            m.find_checked("tls.example:8443", "/x", None),
            Lookup::Provider(ProviderId(3))
        );
        assert_eq!(m.find_checked("tls.example", "/x", None), Lookup::None);
    }

    #[test]
    fn segment_parameters_and_unreserved_escapes_do_not_hide_a_path_prefix() {
        let m = matcher();
        for p in [
            "/shop;jsessionid=ABC/orders",
            "/shop;/x",
            "/sh%6fp/x",
            "/%73hop/orders",
            "/..;/shop/x",
        ] {
            assert_eq!(m.find_checked("w.example", p, None), PATHSHOP, "{p}");
        }
        assert_eq!(m.find_checked("w.example", "/Shop/x", None), Lookup::None);
    }

    #[test]
    fn a_route_name_match_is_refused_when_the_normalised_path_is_another_providers() {
        let m = matcher();
        let lib = Some("library-route");
        assert_eq!(
            m.find_checked("w.example", "/library/loans", lib),
            Lookup::Provider(ProviderId(2))
        );
        assert_eq!(
            m.find_checked("w.example", "/library/../shop/x", lib),
            Lookup::Conflict
        );
        assert_eq!(
            m.find_checked("shop.studeo.example", "/library/../shop/x", lib),
            Lookup::Conflict
        );
    }

    #[test]
    fn a_public_prefix_is_matched_on_the_normalised_path_and_only_for_its_provider() {
        let m = matcher();
        let public = Lookup::Public(ProviderId(1));
        assert_eq!(
            m.find_checked("w.example", "/shop/static/a.css", None),
            public
        );
        assert_eq!(m.find_checked("w.example", "/shop/healthz", None), public);
        assert_eq!(
            m.find_checked("w.example", "/shop//static/a.css", None),
            public
        );
        assert_eq!(
            m.find_checked("w.example", "/shop/static/../orders", None),
            PATHSHOP
        );
        assert_eq!(m.find_checked("w.example", "/shop/orders", None), PATHSHOP);
    }

    #[test]
    fn a_public_prefix_must_be_a_normalised_path() {
        for bad in ["static/", "/a/../b", "/a;x/", "/a%2e/", "/a?x"] {
            let mut b = MatcherBuilder::default();
            let public = s(&[bad]);
            let rule = MatchRule {
                authorities: &[],
                path_prefixes: &s(&["/a/"]),
                route_names: &[],
                public_prefixes: &public,
            };
            let e = b.add(&rule, ProviderId(0), "p").unwrap_err();
            assert!(e.to_string().contains("public_prefixes[0]"), "{bad}: {e}");
        }
    }
}
