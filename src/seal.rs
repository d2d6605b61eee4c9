//! Sealing: finding identity tokens wherever a request carries them, and the
//! byte-exact rewrites that take them out.
//!
//! The configured carriers (`from_headers`, `from_cookies`, `from_params`)
//! are where the filter *reads* a token. They are not the only places a
//! token travels: a browser sends the token cookie on every path, a page
//! opened with `?id_token=` repeats it in `Referer`, apps copy it into
//! `X-Access-Token`, and HTTP/2 lets a client send it as a trailer. The
//! invariant (no token of a configured issuer reaches an upstream unless a
//! contract forwards it) therefore cannot rest on the carriers alone: this
//! module recognises a token by its content. A value holds an identity
//! token when, after percent-decoding, it contains a run of base64url
//! segments one of which decodes to a JSON object whose `iss` is a
//! configured issuer. Nothing is verified: a forged token of our issuer is
//! as much identity data as a real one, and a token of a foreign issuer is
//! not ours to judge.
//!
//! The rewrites work on bytes: a cookie header without the token's cookie
//! keeps every other cookie byte for byte, whatever bytes they hold.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;

use crate::http::percent_decode_bytes;

/// Lenient base64url: padding optional, trailing bits ignored. Detection
/// must catch every spelling an upstream might decode, not only canonical
/// ones.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// The issuers whose tokens are identity data here, compared exactly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Issuers {
    names: Vec<String>,
}

impl Issuers {
    /// The configured issuer URLs.
    pub fn new(names: impl IntoIterator<Item = String>) -> Issuers {
        Issuers {
            names: names.into_iter().collect(),
        }
    }

    fn contains(&self, iss: &str) -> bool {
        self.names.iter().any(|n| n == iss)
    }

    /// Whether `value` holds a token (or a token's payload) of a configured
    /// issuer, as sent or percent-decoded.
    pub fn in_value(&self, value: &[u8]) -> bool {
        if self.names.is_empty() {
            return false;
        }
        if self.scan(value) {
            return true;
        }
        // Encoded forms (`%2E` for the dots, `%65%79` for the leading
        // `ey`): decode once and look again. Decoding twice is not needed:
        // an upstream that decodes twice is beyond what a proxy can model,
        // and a doubly encoded token is refused by every verifier anyway.
        value.contains(&b'%') && self.scan(&percent_decode_bytes(value))
    }

    /// Looks at every maximal run of base64url-and-dot characters.
    fn scan(&self, value: &[u8]) -> bool {
        let is_run = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'=');
        value
            .split(|b| !is_run(b))
            .filter(|run| run.len() >= 8)
            .any(|run| {
                run.split(|b| *b == b'.')
                    .any(|segment| self.is_our_payload(segment))
            })
    }

    /// A segment that decodes to a JSON object naming a configured issuer.
    fn is_our_payload(&self, segment: &[u8]) -> bool {
        // `{` followed by `"` or whitespace encodes to `ey` or `ew`/`eK`/`eQ`
        // (`{\n`, `{\r`, `{\t` ...): a cheap filter before decoding.
        if segment.len() < 8 || segment.first() != Some(&b'e') {
            return false;
        }
        let trimmed = segment
            .iter()
            .rposition(|b| *b != b'=')
            .and_then(|end| segment.get(..=end))
            .unwrap_or(segment);
        let Ok(json) = LENIENT.decode(trimmed) else {
            return false;
        };
        #[derive(serde::Deserialize)]
        struct Peek {
            iss: Option<serde_json::Value>,
        }
        match serde_json::from_slice::<Peek>(&json) {
            Ok(Peek {
                iss: Some(serde_json::Value::String(iss)),
            }) => self.contains(&iss),
            _ => false,
        }
    }
}

/// Cookie header bytes without the cookies `drop` selects (by name); every
/// other cookie is kept byte for byte, with its own separator. `None` when
/// nothing is left.
pub fn without_cookies(header: &[u8], drop: impl Fn(&[u8], &[u8]) -> bool) -> Option<Vec<u8>> {
    let mut out: Vec<u8> = Vec::with_capacity(header.len());
    for pair in header.split(|b| *b == b';') {
        let trimmed = trim(pair);
        if trimmed.is_empty() {
            continue;
        }
        let (name, value) = match trimmed.iter().position(|b| *b == b'=') {
            Some(eq) => (
                trim(trimmed.get(..eq).unwrap_or_default()),
                trimmed.get(eq + 1..).unwrap_or_default(),
            ),
            None => (trimmed, &[][..]),
        };
        if drop(name, value) {
            continue;
        }
        if !out.is_empty() {
            out.extend_from_slice(b"; ");
        }
        out.extend_from_slice(trimmed);
    }
    (!out.is_empty()).then_some(out)
}

/// A URL (a `:path`, or the `Referer` / `Origin` value) without the query
/// parameters `drop` selects (by decoded name and raw value); the rest of
/// the URL is kept byte for byte. `None` when nothing was dropped.
pub fn without_params(url: &[u8], drop: impl Fn(&[u8], &[u8]) -> bool) -> Option<Vec<u8>> {
    let hash = url.iter().position(|b| *b == b'#').unwrap_or(url.len());
    // A `?` inside the fragment starts no query.
    let query_start = url.iter().position(|b| *b == b'?').filter(|q| *q < hash)?;
    let (base, rest) = url.split_at(query_start);
    let rest = rest.get(1..).unwrap_or_default();
    let (query, fragment) = match rest.iter().position(|b| *b == b'#') {
        Some(h) => (rest.get(..h).unwrap_or_default(), rest.get(h..)),
        None => (rest, None),
    };
    let mut kept: Vec<&[u8]> = Vec::new();
    let mut dropped = false;
    for pair in query.split(|b| *b == b'&') {
        if pair.is_empty() {
            continue;
        }
        let (k, v) = match pair.iter().position(|b| *b == b'=') {
            Some(eq) => (
                pair.get(..eq).unwrap_or_default(),
                pair.get(eq + 1..).unwrap_or_default(),
            ),
            None => (pair, &[][..]),
        };
        let name = percent_decode_bytes(&plus_to_space(k));
        if drop(&name, v) {
            dropped = true;
        } else {
            kept.push(pair);
        }
    }
    if !dropped {
        return None;
    }
    let mut out = base.to_vec();
    if !kept.is_empty() {
        out.push(b'?');
        out.extend_from_slice(&kept.join(&b'&'));
    }
    if let Some(f) = fragment {
        out.extend_from_slice(f);
    }
    Some(out)
}

fn plus_to_space(s: &[u8]) -> Vec<u8> {
    s.iter()
        .map(|b| if *b == b'+' { b' ' } else { *b })
        .collect()
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|b| !matches!(b, b' ' | b'\t'));
    let end = s.iter().rposition(|b| !matches!(b, b' ' | b'\t'));
    match (start, end) {
        (Some(a), Some(b)) => s.get(a..=b).unwrap_or_default(),
        _ => &[],
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    const ISS: &str = "https://mpass-proxy.csc.fi";

    fn issuers() -> Issuers {
        Issuers::new([ISS.to_owned()])
    }

    fn token(iss: &str) -> String {
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"k"}"#);
        let p = URL_SAFE_NO_PAD.encode(format!(
            r#"{{"iss":"{iss}","sub":"s","urn:oid:1.3.6.1.4.1.16161.1.1.27":"1.2.246.562.24.10000000001"}}"#
        ));
        format!("{h}.{p}.c2lnbmF0dXJl")
    }

    #[test]
    fn a_token_of_a_configured_issuer_is_found_in_any_wrapping() {
        let t = token(ISS);
        let payload = t.split('.').nth(1).unwrap().to_owned();
        let encoded = t.replace('.', "%2E");
        for value in [
            t.clone(),
            format!("Bearer {t}"),
            format!("a=1; id_token={t}; b=2"),
            format!("https://shop.example/page?x=1&id_token={t}#top"),
            format!("https://shop.example/page?id_token={encoded}"),
            format!("{{\"token\":\"{t}\"}}"),
            payload.clone(),
            format!("{payload}=="),
        ] {
            assert!(issuers().in_value(value.as_bytes()), "{value}");
        }
    }

    #[test]
    fn tokens_of_other_issuers_and_ordinary_values_are_not_identity_tokens() {
        for value in [
            token("https://other.example"),
            "text/html,application/xhtml+xml".to_owned(),
            "eyeglasses-and-more".to_owned(),
            "session=abc.def.ghi".to_owned(),
            String::new(),
        ] {
            assert!(!issuers().in_value(value.as_bytes()), "{value}");
        }
        assert!(!Issuers::default().in_value(token(ISS).as_bytes()));
    }

    #[test]
    fn removing_a_cookie_keeps_the_others_byte_for_byte() {
        let header = b"a=1;id_token=xyz;  bin=\xff\xfe\"q\" ;theme=dark";
        let out = without_cookies(header, |name, _| name == b"id_token").unwrap();
        assert_eq!(out, b"a=1; bin=\xff\xfe\"q\"; theme=dark".to_vec());
        assert_eq!(
            without_cookies(b"id_token=x", |n, _| n == b"id_token"),
            None
        );
        // A cookie is selected by its value too (a token under any name).
        let out = without_cookies(b"a=ok; b=bad", |_, v| v == b"bad").unwrap();
        assert_eq!(out, b"a=ok".to_vec());
    }

    #[test]
    fn removing_a_query_parameter_keeps_the_rest_of_the_url() {
        let url = b"/page?x=1&id%5Ftoken=abc&y=%FF#frag";
        let out = without_params(url, |name, _| name == b"id_token").unwrap();
        assert_eq!(out, b"/page?x=1&y=%FF#frag".to_vec());
        let out = without_params(b"/p?id_token=abc", |n, _| n == b"id_token").unwrap();
        assert_eq!(out, b"/p".to_vec());
        assert_eq!(without_params(b"/p?x=1", |n, _| n == b"id_token"), None);
        assert_eq!(
            without_params(b"/p#a?id_token=1", |n, _| n == b"id_token"),
            None
        );
    }
}
