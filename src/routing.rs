//! Request routing: which provider a request goes to.
//!
//! [`config`](crate::config) builds a [`Matcher`] at load with a
//! [`MatcherBuilder`]; the engine asks it for each request. Path and
//! authority normalisation live here because only matching uses them.

use std::collections::HashMap;

use crate::error::{index, join, ConfigError};

/// A provider, by its position in the compiled configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProviderId(pub(crate) usize);

impl ProviderId {
    /// The position, for tables indexed like the providers.
    pub fn index(self) -> usize {
        self.0
    }
}

/// One provider's `match` rule, as written.
#[derive(Debug, Clone, Copy)]
pub struct MatchRule<'a> {
    pub authorities: &'a [String],
    pub path_prefixes: &'a [String],
    pub route_names: &'a [String],
}

/// The result of matching a request to a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// No provider: the request passes through (sanitised).
    None,
    /// This provider.
    Provider(ProviderId),
    /// The raw and the normalised path match different providers.
    Conflict,
}

/// Finds the provider a request goes to. Precedence: Envoy route name, then
/// authority with the longest path prefix, then any authority with the
/// longest path prefix. Lookups are hash lookups, one per distinct prefix
/// length, so the cost does not grow with the number of providers.
#[derive(Debug, Default)]
pub struct Matcher {
    by_route: HashMap<String, ProviderId>,
    /// authority ("" for any) -> path prefix ("" for any) -> provider.
    by_authority: HashMap<String, HashMap<String, ProviderId>>,
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
            let norm = normalise_authority(a);
            if norm.is_empty()
                || norm
                    .bytes()
                    .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b == b'/')
            {
                return Err(ConfigError::new(
                    index(&join(path, "authorities"), i),
                    "not a host[:port]",
                ));
            }
            authorities.push((norm, i));
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
    /// The provider for a request (`path` may carry a query). The path is
    /// matched both as a normalising upstream reads it (so `//shop/x` or
    /// `/public/../shop/x` cannot slip past the `/shop/` provider when Envoy
    /// does not normalise) and as sent (so `/shop/../public` still needs a
    /// token): matching more is the safe direction. When the two belong to
    /// different providers (`/a/../b/x`), Envoy may route the raw path to one
    /// service while the token and the release would be the other's, so the
    /// answer is [`Lookup::Conflict`] and the request is refused.
    pub fn find_checked(&self, authority: &str, path: &str, route_name: Option<&str>) -> Lookup {
        if let Some(r) = route_name.and_then(|r| self.by_route.get(r)) {
            return Lookup::Provider(*r);
        }
        let path = path.split(['?', '#']).next().unwrap_or_default();
        self.lookup(&normalise_authority(authority), path)
    }

    fn lookup(&self, authority: &str, path: &str) -> Lookup {
        let normalised = self.find_path(authority, &normalise_path(path));
        let raw = self.find_path(authority, path);
        match (normalised, raw) {
            (Some(a), Some(b)) if a != b => Lookup::Conflict,
            (Some(a), _) | (None, Some(a)) => Lookup::Provider(a),
            (None, None) => Lookup::None,
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

/// A request path (without query) as an upstream that normalises paths
/// would read it: `%2E`, `%2F` and `%5C` decoded, `\` read as `/`, repeated
/// slashes merged and `.` / `..` segments removed (RFC 3986 section 5.2.4).
/// Used for provider matching only; Envoy's own `normalize_path` and
/// `merge_slashes` should still be on (see SECURITY.md).
pub fn normalise_path(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut decoded = String::with_capacity(path.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let escaped = (b == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .filter(|c| matches!(c, b'.' | b'/' | b'\\'));
        match escaped {
            Some(c) => {
                decoded.push(char::from(c));
                i += 3;
            }
            None => {
                let len = path
                    .get(i..)
                    .and_then(|rest| rest.chars().next())
                    .map_or(1, char::len_utf8);
                decoded.push_str(path.get(i..i + len).unwrap_or_default());
                i += len;
            }
        }
    }
    let decoded = decoded.replace('\\', "/");
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
