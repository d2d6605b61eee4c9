//! Finding the token in a request (headers, cookies, query parameters) and
//! removing it from exactly the place it came from.
//!
//! Nothing here verifies anything: the result is an untrusted string plus a
//! [`Carrier`] that says how to take it out of the request.

use std::borrow::Cow;

use crate::error::{index, join, ConfigError};
use crate::http::{is_token, percent_decode_form};

/// A header that may carry a token, as in Envoy `jwt_authn`'s `from_headers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderLocation {
    /// Lowercase header name.
    pub name: String,
    /// Prefix before the token, compared case-insensitively (auth schemes are
    /// case-insensitive, RFC 9110 section 11.1). Empty means the whole value.
    pub value_prefix: String,
}

/// Every place a token may come from, compiled at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locations {
    pub headers: Vec<HeaderLocation>,
    pub cookies: Vec<String>,
    pub params: Vec<String>,
}

impl Default for Locations {
    /// `Authorization: Bearer <token>` only.
    fn default() -> Self {
        Self {
            headers: vec![HeaderLocation {
                name: "authorization".into(),
                value_prefix: "Bearer ".into(),
            }],
            cookies: Vec::new(),
            params: Vec::new(),
        }
    }
}

/// Where a found token came from, and so how to remove it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Carrier {
    /// The whole header (every occurrence) is removed.
    Header(String),
    /// Only this cookie is removed; the others are kept as they were.
    Cookie(String),
    /// Only this query parameter is removed; the rest of the query is kept.
    Param(String),
}

/// A token found in the request, not yet trusted: borrowed from the
/// header it was found in (a kilobyte not copied per request), owned only
/// when percent-decoded from a query parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found<'a> {
    pub token: Cow<'a, str>,
    pub carrier: Carrier,
}

/// Why no single token could be taken from the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtractError {
    /// Tokens in two places, or the same place twice: refusing is the only
    /// safe answer, because two parsers might pick different ones.
    Ambiguous,
}

/// A header change that removes the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// Remove this header entirely.
    Remove(String),
    /// Set this header to this value (replacing every occurrence).
    Set(String, String),
}

impl Locations {
    /// Compiles the wire form, checking names.
    pub fn compile(
        headers: Option<&[(String, String)]>,
        cookies: &[String],
        params: &[String],
        path: &str,
    ) -> Result<Locations, ConfigError> {
        let mut out = Locations {
            headers: Vec::new(),
            cookies: Vec::new(),
            params: Vec::new(),
        };
        match headers {
            None => out.headers = Locations::default().headers,
            Some(list) => {
                for (i, (name, prefix)) in list.iter().enumerate() {
                    let p = index(&join(path, "from_headers"), i);
                    let lower = name.to_ascii_lowercase();
                    if !is_token(&lower) || lower.starts_with(':') {
                        return Err(ConfigError::new(
                            join(&p, "name"),
                            "not a valid header name",
                        ));
                    }
                    if prefix.bytes().any(|b| b.is_ascii_control()) {
                        return Err(ConfigError::new(
                            join(&p, "value_prefix"),
                            "must not contain control characters",
                        ));
                    }
                    out.headers.push(HeaderLocation {
                        name: lower,
                        value_prefix: prefix.clone(),
                    });
                }
            }
        }
        for (i, c) in cookies.iter().enumerate() {
            if !is_token(c) {
                return Err(ConfigError::new(
                    index(&join(path, "from_cookies"), i),
                    "not a valid cookie name",
                ));
            }
            out.cookies.push(c.clone());
        }
        for (i, q) in params.iter().enumerate() {
            if q.is_empty()
                || q.bytes()
                    .any(|b| b.is_ascii_control() || b == b'&' || b == b'=')
            {
                return Err(ConfigError::new(
                    index(&join(path, "from_params"), i),
                    "not a valid query parameter name",
                ));
            }
            out.params.push(q.clone());
        }
        if out.headers.is_empty() && out.cookies.is_empty() && out.params.is_empty() {
            return Err(ConfigError::new(path, "no token location configured"));
        }
        Ok(out)
    }

    /// Finds exactly one token. `Ok(None)` when there is none at all.
    ///
    /// `headers` are the request headers with lowercase names, as Envoy
    /// passes them; `path` is the `:path` pseudo-header.
    pub fn find<'a>(
        &self,
        headers: &'a [(String, String)],
        path: &'a str,
    ) -> Result<Option<Found<'a>>, ExtractError> {
        let mut all = self.find_all(headers, path)?;
        if all.len() > 1 {
            return Err(ExtractError::Ambiguous);
        }
        Ok(all.pop())
    }

    /// Every token in a configured carrier, in carrier order. `Err` only
    /// for a header value holding several credentials.
    pub fn find_all<'a>(
        &self,
        headers: &'a [(String, String)],
        path: &'a str,
    ) -> Result<Vec<Found<'a>>, ExtractError> {
        let mut found: Vec<Found<'a>> = Vec::new();
        let mut put = |f: Found<'a>| -> Result<(), ExtractError> {
            found.push(f);
            Ok(())
        };
        for loc in &self.headers {
            for (name, value) in headers {
                if !name.eq_ignore_ascii_case(&loc.name) {
                    continue;
                }
                if let Some(token) = strip_prefix(value, &loc.value_prefix) {
                    // Envoy joins repeated inline headers (Authorization is
                    // one) with ','; a JWS never contains ',', so one means
                    // several credentials in one value. (Other stray bytes
                    // are left to the decoder, which calls them malformed.)
                    if crate::seal::find_byte(token.as_bytes(), b',').is_some() {
                        return Err(ExtractError::Ambiguous);
                    }
                    put(Found {
                        token: Cow::Borrowed(token),
                        carrier: Carrier::Header(loc.name.clone()),
                    })?;
                }
            }
        }
        if !self.cookies.is_empty() {
            for (name, value) in headers {
                if name != "cookie" {
                    continue;
                }
                for pair in cookie_pairs(value) {
                    let Some((k, v)) = pair.split_once('=') else {
                        continue;
                    };
                    let k = k.trim();
                    if self.cookies.iter().any(|c| c == k) {
                        put(Found {
                            token: Cow::Borrowed(v.trim().trim_matches('"')),
                            carrier: Carrier::Cookie(k.to_owned()),
                        })?;
                    }
                }
            }
        }
        if !self.params.is_empty() {
            // The fragment goes first: a '?' inside it starts no query (and
            // `removal` would leave a token found there in place).
            let before_fragment = path.split('#').next().unwrap_or_default();
            if let Some((_, query)) = before_fragment.split_once('?') {
                for pair in query.split('&') {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    let k = percent_decode_form(k);
                    if let Some(name) = self.params.iter().find(|p| **p == k) {
                        put(Found {
                            token: Cow::Owned(percent_decode_form(v)),
                            carrier: Carrier::Param(name.clone()),
                        })?;
                    }
                }
            }
        }
        Ok(found)
    }
}

/// The `;`-separated pieces of a cookie header (`str::split(';')`, with
/// the separator searched eight bytes at a time: the token cookie makes
/// the header over a kilobyte long).
fn cookie_pairs(value: &str) -> impl Iterator<Item = &str> {
    let mut start = 0;
    crate::seal::split_byte(value.as_bytes(), b';').filter_map(move |piece| {
        // `;` is ASCII, so every piece starts and ends on a char boundary.
        let p = value.get(start..start + piece.len());
        start += piece.len() + 1;
        p
    })
}

/// Strips `prefix` case-insensitively and the spaces after it. `None` when
/// the value does not start with the prefix or nothing follows it.
fn strip_prefix<'a>(value: &'a str, prefix: &str) -> Option<&'a str> {
    let head = value.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = value
        .get(prefix.len()..)?
        .trim_matches(|c| c == ' ' || c == '\t');
    (!rest.is_empty()).then_some(rest)
}

/// The header changes that take the token out of the request.
pub fn removal(carrier: &Carrier, headers: &[(String, String)], path: &str) -> Removal {
    match carrier {
        Carrier::Header(name) => Removal::Remove(name.clone()),
        Carrier::Cookie(name) => {
            let kept: Vec<&str> = headers
                .iter()
                .filter(|(n, _)| n == "cookie")
                .flat_map(|(_, v)| v.split(';'))
                .filter(|pair| {
                    let k = pair.split_once('=').map_or(*pair, |(k, _)| k).trim();
                    k != name && !pair.trim().is_empty()
                })
                .map(str::trim)
                .collect();
            if kept.is_empty() {
                Removal::Remove("cookie".into())
            } else {
                Removal::Set("cookie".into(), kept.join("; "))
            }
        }
        Carrier::Param(name) => {
            let (before_fragment, fragment) = match path.split_once('#') {
                Some((b, f)) => (b, Some(f)),
                None => (path, None),
            };
            let Some((base, query)) = before_fragment.split_once('?') else {
                return Removal::Set(":path".into(), path.to_owned());
            };
            let kept: Vec<&str> = query
                .split('&')
                .filter(|pair| {
                    let k = pair.split_once('=').map_or(*pair, |(k, _)| k);
                    !pair.is_empty() && percent_decode_form(k) != *name
                })
                .collect();
            let mut out = base.to_owned();
            if !kept.is_empty() {
                out.push('?');
                out.push_str(&kept.join("&"));
            }
            if let Some(f) = fragment {
                out.push('#');
                out.push_str(f);
            }
            Removal::Set(":path".into(), out)
        }
    }
}

/// The header-name rule, under the name `config` still calls it by; the rule
/// itself lives in [`crate::http::is_token`].
pub use crate::http::is_token as is_token_name;

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn all() -> Locations {
        Locations {
            headers: Locations::default().headers,
            cookies: vec!["id_token".into()],
            params: vec!["id_token".into()],
        }
    }

    #[test]
    fn bearer_prefix_is_case_insensitive_and_tolerates_extra_spaces() {
        for value in ["Bearer abc", "bearer abc", "BEARER   abc", "Bearer abc  "] {
            let headers = h(&[("authorization", value)]);
            let found = all().find(&headers, "/").unwrap();
            assert_eq!(found.unwrap().token, "abc", "{value:?}");
        }
    }

    #[test]
    fn other_schemes_and_empty_bearer_are_no_token() {
        for value in ["Basic dXNlcjpwdw==", "Bearer", "Bearer   ", "Bearerabc"] {
            let headers = h(&[("authorization", value)]);
            let found = all().find(&headers, "/").unwrap();
            assert_eq!(found, None, "{value:?}");
        }
    }

    #[test]
    fn two_authorization_headers_are_ambiguous() {
        let headers = h(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]);
        assert_eq!(all().find(&headers, "/"), Err(ExtractError::Ambiguous));
    }

    #[test]
    fn authorization_headers_joined_by_the_proxy_are_ambiguous() {
        let headers = h(&[("authorization", "Bearer a,Bearer b")]);
        assert_eq!(all().find(&headers, "/"), Err(ExtractError::Ambiguous));
    }

    #[test]
    fn a_token_in_header_and_cookie_is_ambiguous() {
        let headers = h(&[("authorization", "Bearer a"), ("cookie", "id_token=b")]);
        assert_eq!(all().find(&headers, "/"), Err(ExtractError::Ambiguous));
    }

    #[test]
    fn a_repeated_query_parameter_is_ambiguous_even_when_encoded() {
        assert_eq!(
            all().find(&[], "/p?id_token=a&id%5Ftoken=b"),
            Err(ExtractError::Ambiguous)
        );
    }

    #[test]
    fn cookie_removal_keeps_the_other_cookies_intact() {
        let headers = h(&[("cookie", "a=1; id_token=tok; b=\"x y\"")]);
        let found = all().find(&headers, "/").unwrap().unwrap();
        assert_eq!(found.token, "tok");
        assert_eq!(
            removal(&found.carrier, &headers, "/"),
            Removal::Set("cookie".into(), "a=1; b=\"x y\"".into())
        );
    }

    #[test]
    fn removing_the_only_cookie_removes_the_header() {
        let headers = h(&[("cookie", "id_token=tok")]);
        let found = all().find(&headers, "/").unwrap().unwrap();
        assert_eq!(
            removal(&found.carrier, &headers, "/"),
            Removal::Remove("cookie".into())
        );
    }

    #[test]
    fn query_removal_keeps_the_rest_of_the_query_intact() {
        let path = "/p/q?x=1&id_token=a.b.c&y=%20z#frag";
        let found = all().find(&[], path).unwrap().unwrap();
        assert_eq!(found.token, "a.b.c");
        assert_eq!(
            removal(&found.carrier, &[], path),
            Removal::Set(":path".into(), "/p/q?x=1&y=%20z#frag".into())
        );
        let only = "/p?id_token=a.b.c";
        assert_eq!(
            removal(&found.carrier, &[], only),
            Removal::Set(":path".into(), "/p".into())
        );
    }

    #[test]
    fn a_question_mark_inside_the_fragment_starts_no_query() {
        // Found by fuzzing: `find` read `?id_token=` after the '#', `removal`
        // kept it as part of the fragment, so the token stayed in the path.
        let path = "/p#?id_token=a.b.c";
        assert_eq!(all().find(&[], path), Ok(None));
        let path = "/p?x=1#?id%5Ftoken";
        assert_eq!(all().find(&[], path), Ok(None));
        let path = "/p?id_token=a.b.c#?id_token=d";
        let found = all().find(&[], path).unwrap().unwrap();
        assert_eq!(found.token, "a.b.c");
        let Removal::Set(_, cleaned) = removal(&found.carrier, &[], path) else {
            panic!("query removal sets :path");
        };
        assert_eq!(cleaned, "/p#?id_token=d");
        assert_eq!(all().find(&[], &cleaned), Ok(None));
    }

    #[test]
    fn configuration_rejects_bad_names_with_their_path() {
        let err = Locations::compile(None, &["bad name".into()], &[], "").unwrap_err();
        assert_eq!(err.path, "from_cookies[0]");
        let err =
            Locations::compile(Some(&[("x y".into(), "".into())]), &[], &[], "p").unwrap_err();
        assert_eq!(err.path, "p.from_headers[0].name");
    }
}
