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
//!
//! [`Sealer`] is the one sanitiser of tokens every request gets, whatever
//! routing decided: it removes the configured carriers (headers with their
//! prefix, cookies, query parameters), the session cookies of Envoy's
//! oauth2 filter, and every value holding a configured issuer's token
//! (any header, each cookie, each `:path` query parameter, `Referer` and
//! `Origin` cleaned of such parameters and removed only when they cannot
//! be cleaned), except the one carrier a protected provider's contract
//! forwards.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;

use std::cell::Cell;

use crate::extract::{Carrier, Locations};
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
        // A run shorter than 8 is never looked at, and percent-decoding
        // only shortens a value.
        if self.names.is_empty() || value.len() < 8 {
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

    /// Whether `token`, standing alone, is one run of base64url-and-dot
    /// characters that [`Issuers::in_value`] recognises as ours. A value
    /// that holds such a token as a whole run holds our token whatever else
    /// it holds: [`Known`] lets the sealer skip decoding it again.
    pub fn run_is_ours(&self, token: &[u8]) -> bool {
        !self.names.is_empty() && token.iter().all(is_run) && self.scan(token)
    }

    /// [`Issuers::run_is_ours`] of a token the strict decode accepted
    /// ([`crate::verify::Untrusted::decode`]) and found to name `iss`, with
    /// `claims_json` its decoded payload: the same answer without decoding
    /// the token again. Such a token is one run (base64url and two dots),
    /// and its payload segment is one [`Issuers::scan`] recognises when it
    /// starts with `e`, that is when the JSON starts with `{` (an object
    /// starts with `{` or whitespace, and only `x`, `y`, `z`, `{` encode to
    /// a leading `e`); the lenient decode and `Peek` accept whatever the
    /// strict decode and parser did. A payload with leading whitespace is
    /// looked at the long way, since another segment may still match.
    pub fn decoded_is_ours(&self, token: &[u8], claims_json: &[u8], iss: &str) -> bool {
        if claims_json.first() == Some(&b'{') && claims_json.len() >= 6 && self.contains(iss) {
            return true;
        }
        self.run_is_ours(token)
    }

    /// Looks at every segment (between dots) of every maximal run of
    /// base64url-and-dot characters that could be a JSON object's
    /// encoding: one starting with `e` ([`Issuers::is_our_payload`]), found
    /// with [`find_byte`] instead of splitting the whole value byte by byte.
    /// The same answer as looking at every segment of every run of at least
    /// 8 bytes (`scan_reference` in the tests): a segment of 8 bytes or
    /// more lies in such a run, and shorter ones are never ours.
    fn scan(&self, value: &[u8]) -> bool {
        let mut from = 0;
        while let Some(at) = value.get(from..).and_then(|rest| find_byte(rest, b'e')) {
            let start = from + at;
            from = start + 1;
            let starts_segment = start == 0
                || value
                    .get(start - 1)
                    .is_some_and(|b| *b == b'.' || !is_run(b));
            if !starts_segment {
                continue;
            }
            let rest = value.get(start..).unwrap_or_default();
            let len = rest
                .iter()
                .position(|b| *b == b'.' || !is_run(b))
                .unwrap_or(rest.len());
            let segment = rest.get(..len).unwrap_or_default();
            if self.is_our_payload(segment) {
                return true;
            }
            // The next candidate starts after this segment.
            from = start + len.max(1);
        }
        false
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

/// A character of a run [`Issuers::scan`] looks at.
fn is_run(b: &u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'=')
}

/// Byte equality 32 bytes at a time. `==` on slices calls `memcmp`,
/// which on wasm32 is a loop over single bytes: comparing a 1.2 KB token
/// that way cost ~1 µs per comparison in V8. Fixed-size chunks let the
/// compiler drop every bounds check (`chunks_exact` with `try_into` kept
/// them: ~8 instructions a word).
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (mut x, mut y) = (a, b);
    while let (Some((xa, xr)), Some((ya, yr))) =
        (x.split_first_chunk::<32>(), y.split_first_chunk::<32>())
    {
        let (wx, wy) = (words(xa), words(ya));
        let diff = (wx[0] ^ wy[0]) | (wx[1] ^ wy[1]) | (wx[2] ^ wy[2]) | (wx[3] ^ wy[3]);
        if diff != 0 {
            return false;
        }
        (x, y) = (xr, yr);
    }
    while let (Some((xa, xr)), Some((ya, yr))) =
        (x.split_first_chunk::<8>(), y.split_first_chunk::<8>())
    {
        if u64::from_ne_bytes(*xa) != u64::from_ne_bytes(*ya) {
            return false;
        }
        (x, y) = (xr, yr);
    }
    x.iter().zip(y).all(|(p, q)| p == q)
}

/// The four native-endian words of a 32-byte chunk.
fn words(chunk: &[u8; 32]) -> [u64; 4] {
    let mut out = [0u64; 4];
    for (o, w) in out.iter_mut().zip(chunk.chunks_exact(8)) {
        *o = w.try_into().map_or(0, u64::from_ne_bytes);
    }
    out
}

/// The first position of `needle` in `hay`, eight bytes at a time (SWAR).
/// `position` tests one byte per iteration and `str::split`'s memchr works
/// a `usize` (four bytes on wasm32) at a time; cookie headers and tokens
/// are over a kilobyte, and most of their bytes are the token's.
pub(crate) fn find_byte(hay: &[u8], needle: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let pattern = LO.wrapping_mul(u64::from(needle));
    // A zero byte of `w ^ pattern` is a match; the lowest flagged byte is
    // exact (a false flag only ever sits above a true one).
    let zeros = |w: u64| {
        let x = w ^ pattern;
        x.wrapping_sub(LO) & !x & HI
    };
    let mut rest = hay;
    while let Some((pair, tail)) = rest.split_first_chunk::<16>() {
        let (lo, hi) = pair.split_at(8);
        let (lo, hi) = (
            zeros(lo.try_into().map_or(0, u64::from_le_bytes)),
            zeros(hi.try_into().map_or(0, u64::from_le_bytes)),
        );
        if lo | hi != 0 {
            let at = hay.len() - rest.len();
            return Some(if lo != 0 {
                at + (lo.trailing_zeros() / 8) as usize
            } else {
                at + 8 + (hi.trailing_zeros() / 8) as usize
            });
        }
        rest = tail;
    }
    let at = hay.len() - rest.len();
    rest.iter().position(|b| *b == needle).map(|p| at + p)
}

/// The pieces of `hay` between occurrences of `sep` ([`slice::split`],
/// searched with [`find_byte`]).
pub(crate) fn split_byte(hay: &[u8], sep: u8) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(hay);
    std::iter::from_fn(move || {
        let r = rest?;
        match find_byte(r, sep) {
            Some(i) => {
                rest = r.get(i + 1..);
                r.get(..i)
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// A token already known to be a configured issuer's, as a whole run
/// ([`Issuers::run_is_ours`]), in the configured carrier it was found in: a
/// cached token is not decoded again on every request to find out what the
/// cache already says. Whatever the carrier (header, cookie or query
/// parameter), only a value that holds the token as a maximal run is
/// answered without looking; any other value is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Known<'a> {
    pub carrier: &'a Carrier,
    pub token: &'a [u8],
}

impl Known<'_> {
    /// Whether `value` of header `name` holds the known token as a maximal
    /// run (at its end, after a character no run holds, or alone), so that
    /// [`Issuers::in_value`] of `value` is true without looking.
    fn holds(&self, name: &str, value: &[u8]) -> bool {
        let Carrier::Header(header) = self.carrier else {
            return false;
        };
        let Some(start) = value.len().checked_sub(self.token.len()) else {
            return false;
        };
        name == header
            && value
                .get(start..)
                .is_some_and(|tail| same_bytes(tail, self.token))
            && (start == 0 || value.get(start - 1).is_some_and(|b| !is_run(b)))
    }

    /// Whether cookie `name`'s value is the known token itself (the
    /// cookie it was found in): a value that is one whole run, so
    /// [`Issuers::in_value`] of it is what [`Issuers::run_is_ours`] said.
    fn is_cookie(&self, name: &[u8], value: &[u8]) -> bool {
        matches!(self.carrier, Carrier::Cookie(c) if c.as_bytes() == name)
            && same_bytes(value, self.token)
    }

    /// Whether query parameter `name`'s raw value is the known token itself.
    fn is_param(&self, name: &[u8], value: &[u8]) -> bool {
        matches!(self.carrier, Carrier::Param(p) if p.as_bytes() == name)
            && same_bytes(value, self.token)
    }
}

/// The oauth2 filter's session cookies (Envoy's default names); cookies
/// whose names start with `OauthNonce` or `CodeVerifier` are session
/// cookies too (the filter suffixes them per flow).
pub const DEFAULT_SESSION_COOKIES: &[&str] = &[
    "BearerToken",
    "IdToken",
    "RefreshToken",
    "OauthHMAC",
    "OauthExpires",
    "OauthNonce",
    "CodeVerifier",
];

/// Name prefixes that make a cookie a session cookie whatever the list says.
const SESSION_COOKIE_PREFIXES: &[&str] = &["OauthNonce", "CodeVerifier"];

/// Where a stripped token was, for the `tokens_stripped` counter and the
/// audit line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Place {
    /// A configured token header.
    Header,
    Cookie,
    /// A query parameter of `:path`.
    Query,
    /// A parameter of `Referer` or `Origin`, or the whole header.
    Referer,
    Trailer,
    /// Any other header.
    Other,
}

impl Place {
    /// Every place, in counter order.
    pub const ALL: [Place; 6] = [
        Place::Header,
        Place::Cookie,
        Place::Query,
        Place::Referer,
        Place::Trailer,
        Place::Other,
    ];

    /// The counter's `carrier` value.
    pub fn name(self) -> &'static str {
        match self {
            Place::Header => "header",
            Place::Cookie => "cookie",
            Place::Query => "query",
            Place::Referer => "referer",
            Place::Trailer => "trailer",
            Place::Other => "other",
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

/// The header changes that seal a request, and what they took out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sealed {
    /// Headers to remove (every occurrence).
    pub remove: Vec<String>,
    /// Headers to set (replacing), as bytes.
    pub set: Vec<(String, Vec<u8>)>,
    /// Tokens stripped, per [`Place::slot`].
    pub stripped: [u32; 6],
    /// Whether a configured issuer's token was anywhere in the request.
    pub ours: bool,
}

impl Sealed {
    /// Total tokens stripped.
    pub fn count(&self) -> u32 {
        self.stripped.iter().sum()
    }

    /// The places tokens were stripped from, with their counts.
    pub fn places(&self) -> impl Iterator<Item = (Place, u32)> + '_ {
        Place::ALL
            .into_iter()
            .filter_map(|p| self.stripped.get(p.slot()).map(|n| (p, *n)))
            .filter(|(_, n)| *n > 0)
    }

    fn bump(&mut self, place: Place) {
        if let Some(n) = self.stripped.get_mut(place.slot()) {
            *n = n.saturating_add(1);
        }
    }
}

/// The token sanitiser, compiled at load.
#[derive(Debug, Clone, Default)]
pub struct Sealer {
    pub issuers: Issuers,
    locations: Locations,
    session_cookies: Vec<String>,
}

/// What the sealer takes out besides the session cookies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strip<'a> {
    /// Every token (configured carriers and configured-issuer tokens),
    /// except the forwarded carrier, if any.
    Tokens { keep: Option<&'a Carrier> },
    /// Nothing but the session cookies (`unmatched: pass`).
    SessionOnly,
}

impl Sealer {
    /// The sealer of these issuers' tokens, carriers and session cookies.
    pub fn new(issuers: Issuers, locations: Locations, session_cookies: Vec<String>) -> Sealer {
        Sealer {
            issuers,
            locations,
            session_cookies,
        }
    }

    fn is_session_cookie(&self, name: &[u8]) -> bool {
        self.session_cookies.iter().any(|c| c.as_bytes() == name)
            || SESSION_COOKIE_PREFIXES
                .iter()
                .any(|p| name.starts_with(p.as_bytes()))
    }

    /// Seals request headers (names lowercase, values as bytes, `:path`
    /// included). Identity headers are the [`Sanitiser`]'s business and are
    /// expected to be removed already.
    ///
    /// [`Sanitiser`]: crate::forward::Sanitiser
    pub fn seal<'h>(
        &self,
        headers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
        strip: Strip<'_>,
    ) -> Sealed {
        self.seal_known(headers, strip, None)
    }

    /// [`Sealer::seal`], told of a token already known to be ours: the
    /// header holding it is not decoded again. The result is the same.
    pub fn seal_known<'h>(
        &self,
        headers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
        strip: Strip<'_>,
        known: Option<Known<'_>>,
    ) -> Sealed {
        let (tokens, keep) = match strip {
            Strip::Tokens { keep } => (true, keep),
            Strip::SessionOnly => (false, None),
        };
        let mut out = Sealed::default();
        let mut cookies: Option<(bool, Vec<u8>)> = None;
        for (name, value) in headers {
            match name {
                "cookie" => {
                    let (changed, kept) = cookies.get_or_insert((false, Vec::new()));
                    let dropped = Cell::new(false);
                    let rest = without_cookies(value, |n, v| {
                        let kept_carrier =
                            matches!(keep, Some(Carrier::Cookie(k)) if k.as_bytes() == n);
                        let ours = !kept_carrier
                            && (known.is_some_and(|k| k.is_cookie(n, v))
                                || self.issuers.in_value(v));
                        let carrier = self.locations.cookies.iter().any(|c| c.as_bytes() == n);
                        let session = !kept_carrier && self.is_session_cookie(n);
                        let drop_token = tokens && !kept_carrier && (ours || carrier);
                        if ours {
                            out.ours = true;
                        }
                        if drop_token {
                            out.bump(Place::Cookie);
                        }
                        let drop = drop_token || session;
                        if drop {
                            dropped.set(true);
                        }
                        drop
                    });
                    if dropped.get() {
                        *changed = true;
                    }
                    if let Some(rest) = rest {
                        if !kept.is_empty() {
                            kept.extend_from_slice(b"; ");
                        }
                        kept.extend_from_slice(&rest);
                    }
                }
                ":path" => {
                    let rest = without_params(value, |n, v| {
                        let kept_carrier =
                            matches!(keep, Some(Carrier::Param(k)) if k.as_bytes() == n);
                        let ours = !kept_carrier
                            && (known.is_some_and(|k| k.is_param(n, v))
                                || self.issuers.in_value(v));
                        out.ours |= ours;
                        let carrier = self.locations.params.iter().any(|p| p.as_bytes() == n);
                        let drop = tokens && !kept_carrier && (ours || carrier);
                        if drop {
                            out.bump(Place::Query);
                        }
                        drop
                    });
                    if let Some(rest) = rest {
                        out.set.push((":path".to_owned(), rest));
                    }
                }
                _ if name.starts_with(':') => {}
                _ if matches!(keep, Some(Carrier::Header(k)) if k == name) => {}
                "referer" | "origin" => {
                    if !self.issuers.in_value(value) {
                        continue;
                    }
                    out.ours = true;
                    if !tokens {
                        continue;
                    }
                    out.bump(Place::Referer);
                    let cleaned = without_params(value, |_, v| self.issuers.in_value(v))
                        .filter(|c| !self.issuers.in_value(c));
                    match cleaned {
                        Some(c) => out.set.push((name.to_owned(), c)),
                        None => out.remove.push(name.to_owned()),
                    }
                }
                _ => {
                    let ours =
                        known.is_some_and(|k| k.holds(name, value)) || self.issuers.in_value(value);
                    out.ours |= ours;
                    let carrier = self.locations.headers.iter().any(|l| {
                        l.name == name && holds_after_prefix(value, l.value_prefix.as_bytes())
                    });
                    if tokens && (ours || carrier) && !out.remove.iter().any(|r| r == name) {
                        out.bump(if carrier { Place::Header } else { Place::Other });
                        out.remove.push(name.to_owned());
                    }
                }
            }
        }
        if let Some((true, kept)) = cookies {
            if kept.is_empty() {
                out.remove.push("cookie".to_owned());
            } else {
                out.set.push(("cookie".to_owned(), kept));
            }
        }
        out
    }

    /// The request trailers to remove: every one holding a configured
    /// issuer's token or in a configured token header (`Strip::Tokens`).
    /// Identity trailers are the [`Sanitiser`]'s business.
    ///
    /// [`Sanitiser`]: crate::forward::Sanitiser
    pub fn seal_trailers<'h>(
        &self,
        trailers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
        strip: Strip<'_>,
    ) -> Sealed {
        let mut out = Sealed::default();
        for (name, value) in trailers {
            let ours = self.issuers.in_value(value);
            out.ours |= ours;
            let carrier = self.locations.headers.iter().any(|l| l.name == name);
            let strip_it = matches!(strip, Strip::Tokens { .. }) && (ours || carrier);
            if strip_it && !out.remove.iter().any(|r| r == name) {
                out.bump(Place::Trailer);
                out.remove.push(name.to_owned());
            }
        }
        out
    }
}

/// Whether `value` starts with `prefix` (ASCII case-insensitively) and
/// something other than spaces follows.
fn holds_after_prefix(value: &[u8], prefix: &[u8]) -> bool {
    value.len() > prefix.len()
        && value
            .get(..prefix.len())
            .is_some_and(|h| h.eq_ignore_ascii_case(prefix))
        && value
            .get(prefix.len()..)
            .is_some_and(|rest| rest.iter().any(|b| !matches!(b, b' ' | b'\t')))
}

/// Cookie header bytes without the cookies `drop` selects (by name); every
/// other cookie is kept byte for byte, with its own separator. `None` when
/// nothing is left.
pub fn without_cookies(
    header: &[u8],
    mut drop: impl FnMut(&[u8], &[u8]) -> bool,
) -> Option<Vec<u8>> {
    let mut out: Vec<u8> = Vec::with_capacity(header.len());
    for pair in split_byte(header, b';') {
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
pub fn without_params(url: &[u8], mut drop: impl FnMut(&[u8], &[u8]) -> bool) -> Option<Vec<u8>> {
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
    fn find_byte_and_split_byte_agree_with_the_slice_methods() {
        let mut hay: Vec<u8> = (0..=255u8).cycle().take(600).collect();
        hay.extend_from_slice(b"a;b;;c;");
        for len in [0, 1, 7, 8, 9, 15, 16, 17, 255, 256, 257, 300, hay.len()] {
            let h = &hay[..len];
            for needle in [0u8, 1, 0x7f, 0x80, 0x81, 0xfe, 0xff, b';', b'a'] {
                assert_eq!(
                    find_byte(h, needle),
                    h.iter().position(|b| *b == needle),
                    "{len} {needle}"
                );
            }
            let ours: Vec<&[u8]> = split_byte(h, b';').collect();
            let std: Vec<&[u8]> = h.split(|b| *b == b';').collect();
            assert_eq!(ours, std, "{len}");
        }
        // A byte one above or below the needle is no match (SWAR borrows).
        assert_eq!(
            find_byte(b"\x3a\x3c\x3a\x3c\x3a\x3c\x3a\x3c\x3b", b';'),
            Some(8)
        );
        assert_eq!(
            find_byte(b"\x00\x01\x00\x3b\x00\x00\x00\x00", b';'),
            Some(3)
        );
    }

    /// The scan as it was: every segment of every run of 8 or more.
    fn scan_reference(issuers: &Issuers, value: &[u8]) -> bool {
        value
            .split(|b| !is_run(b))
            .filter(|run| run.len() >= 8)
            .any(|run| {
                run.split(|b| *b == b'.')
                    .any(|segment| issuers.is_our_payload(segment))
            })
    }

    proptest::proptest! {
        #[test]
        fn the_scan_finds_what_looking_at_every_run_finds(
            parts in proptest::collection::vec(0usize..9, 0..24),
        ) {
            let t = token(ISS);
            let payload = t.split('.').nth(1).unwrap().to_owned();
            let pieces = [
                payload.as_str(), ".", " ", "e", "eyJ", "=", "abcdefgh", "%2E", "\u{e4}",
            ];
            let value: String = parts.iter().map(|i| pieces[*i]).collect();
            let issuers = issuers();
            proptest::prop_assert_eq!(
                issuers.scan(value.as_bytes()),
                scan_reference(&issuers, value.as_bytes()),
                "{}", value
            );
        }
    }

    #[test]
    fn same_bytes_is_slice_equality() {
        let a: Vec<u8> = (0..100u8).collect();
        for len in 0..a.len() {
            let x = &a[..len];
            assert!(same_bytes(x, x));
            for i in 0..len {
                let mut y = x.to_vec();
                y[i] ^= 1;
                assert!(!same_bytes(x, &y), "{len} {i}");
            }
            assert!(!same_bytes(x, &a[..len + 1]));
        }
    }

    #[test]
    fn a_known_token_seals_its_carrier_exactly_as_looking_would() {
        let ours = token(ISS);
        let other = token("https://other.example");
        let locations = Locations {
            cookies: vec!["IdToken".into()],
            params: vec!["id_token".into()],
            ..Locations::default()
        };
        let sealer = Sealer::new(
            issuers(),
            locations,
            DEFAULT_SESSION_COOKIES
                .iter()
                .map(|c| c.to_string())
                .collect(),
        );
        assert!(sealer.issuers.run_is_ours(ours.as_bytes()));
        assert!(!sealer.issuers.run_is_ours(other.as_bytes()));
        assert!(!sealer.issuers.run_is_ours(format!("x {ours}").as_bytes()));
        let header = Carrier::Header("authorization".into());
        let cookie = Carrier::Cookie("IdToken".into());
        let param = Carrier::Param("id_token".into());
        let mut cases = Vec::new();
        for value in [
            format!("Bearer {ours}"),
            ours.clone(),
            format!("Bearer {other}"),
            format!("Bearer x{ours}"),
            format!("Bearer {ours} "),
        ] {
            cases.push(("authorization", value.clone()));
            cases.push(("x-token", value));
        }
        for jar in [
            format!("lang=fi; IdToken={ours}; BearerToken=at1"),
            format!("IdToken=\"{ours}\""),
            format!("IdToken={other}; lang=fi"),
            format!("IdToken=x{ours}"),
            format!("lang={ours}; IdToken=abc"),
            format!("idtoken={ours}"),
            "lang=fi".to_owned(),
        ] {
            cases.push(("cookie", jar));
        }
        for path in [
            format!("/a?id_token={ours}&b=1"),
            format!("/a?id_token={other}"),
            format!("/a?id_token=%65{}", &ours[1..]),
            format!("/a?x={ours}"),
            format!("/a?id_token={ours}x"),
        ] {
            cases.push((":path", path));
        }
        let strip = Strip::Tokens { keep: None };
        for (name, value) in &cases {
            let headers = [(*name, value.as_bytes())];
            let looked = sealer.seal(headers, strip);
            for carrier in [&header, &cookie, &param] {
                let known = Known {
                    carrier,
                    token: ours.as_bytes(),
                };
                assert_eq!(
                    sealer.seal_known(headers, strip, Some(known)),
                    looked,
                    "{name}: {value} ({carrier:?})"
                );
            }
        }
        // Each carrier's shortcut is taken (not only the long way): told
        // that a foreign token is ours, the sealer believes it there.
        for (carrier, name, value) in [
            (&header, "authorization", format!("Bearer {other}")),
            (&cookie, "cookie", format!("lang=fi; IdToken={other}")),
            (&param, ":path", format!("/a?id_token={other}")),
        ] {
            let headers = [(name, value.as_bytes())];
            assert!(!sealer.seal(headers, strip).ours);
            let told = Known {
                carrier,
                token: other.as_bytes(),
            };
            assert!(sealer.seal_known(headers, strip, Some(told)).ours, "{name}");
        }
    }

    #[test]
    fn a_strictly_decoded_token_is_ours_exactly_when_the_lenient_scan_says_so() {
        use crate::verify::Untrusted;
        let enc = |s: &str| URL_SAFE_NO_PAD.encode(s);
        let ours_header = format!(r#"{{"alg":"RS256","iss":"{ISS}"}}"#);
        let ours_sig = enc(&format!(r#"{{"iss":"{ISS}"}}"#));
        let mut cases = Vec::new();
        for header in [
            r#"{"alg":"RS256","kid":"k"}"#,
            r#" {"alg":"RS256"}"#,
            &ours_header,
        ] {
            for iss in [ISS, "https://other.example"] {
                for payload in [
                    format!(r#"{{"iss":"{iss}","sub":"s"}}"#),
                    format!(r#" {{"iss":"{iss}"}}"#),
                    format!("\n{{\"iss\":\"{iss}\"}}"),
                    format!("\t\r {{\"iss\":\"{iss}\"}} "),
                    format!(r#"{{"sub":"s","iss":"{iss}","x":[{{"iss":"y"}}]}}"#),
                ] {
                    // A signature part starting with `e` is looked at too.
                    for sig in ["c2lnbmF0dXJl", "eyJpc3MiOiJ4In0", &ours_sig] {
                        cases.push(format!("{}.{}.{sig}", enc(header), enc(&payload)));
                    }
                }
            }
        }
        let issuers = issuers();
        let mut fast = 0;
        for t in cases {
            let u = Untrusted::decode(&t, 16 * 1024).unwrap();
            let iss = u.issuer().unwrap();
            let decoded = issuers.decoded_is_ours(t.as_bytes(), u.claims_json(), iss);
            assert_eq!(decoded, issuers.run_is_ours(t.as_bytes()), "{t}");
            fast += usize::from(decoded && u.claims_json().first() == Some(&b'{'));
        }
        assert!(fast > 0);
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

    fn sealer() -> Sealer {
        let locations = Locations {
            headers: Locations::default().headers,
            cookies: vec!["id_token".into()],
            params: vec!["id_token".into()],
        };
        let session = DEFAULT_SESSION_COOKIES
            .iter()
            .map(|c| (*c).to_owned())
            .collect();
        Sealer::new(issuers(), locations, session)
    }

    fn seal(headers: &[(&str, &[u8])], strip: Strip<'_>) -> Sealed {
        sealer().seal(headers.iter().map(|(n, v)| (*n, *v)), strip)
    }

    #[test]
    fn every_token_of_a_configured_issuer_leaves_wherever_it_is() {
        let t = token(ISS);
        let bearer = format!("Bearer {t}");
        let cookie = format!("theme=dark; id_token={t}; bin=%FF; session_jwt={t}");
        let path = format!("/app?x=1&id_token={t}&y=2");
        let referer = format!("https://shop.example/p?id_token={t}&keep=1");
        let sealed = seal(
            &[
                (":path", path.as_bytes()),
                ("authorization", bearer.as_bytes()),
                ("proxy-authorization", bearer.as_bytes()),
                ("x-debug", t.as_bytes()),
                ("referer", referer.as_bytes()),
                ("cookie", cookie.as_bytes()),
                ("accept", b"text/html"),
            ],
            Strip::Tokens { keep: None },
        );
        assert!(sealed.ours);
        assert_eq!(
            sealed.remove,
            vec!["authorization", "proxy-authorization", "x-debug"]
        );
        assert!(sealed
            .set
            .contains(&(":path".into(), b"/app?x=1&y=2".to_vec())));
        assert!(sealed
            .set
            .contains(&("referer".into(), b"https://shop.example/p?keep=1".to_vec())));
        assert!(sealed
            .set
            .contains(&("cookie".into(), b"theme=dark; bin=%FF".to_vec())));
        assert_eq!(sealed.count(), 7);
    }

    #[test]
    fn the_forwarded_carrier_stays_and_its_copies_do_not() {
        let t = token(ISS);
        let cookie = format!("id_token={t}; other={t}");
        let keep = Carrier::Cookie("id_token".into());
        let sealed = seal(
            &[("cookie", cookie.as_bytes()), ("x-access", t.as_bytes())],
            Strip::Tokens { keep: Some(&keep) },
        );
        assert_eq!(sealed.remove, vec!["x-access"]);
        assert_eq!(
            sealed.set,
            vec![("cookie".to_owned(), format!("id_token={t}").into_bytes())]
        );
    }

    #[test]
    fn session_cookies_leave_on_every_path_even_when_tokens_stay() {
        let sealed = seal(
            &[(
                "cookie",
                b"BearerToken=opaque; OauthNonce.abc=n; CodeVerifier1=v; IdToken=x; a=\xfe",
            )],
            Strip::SessionOnly,
        );
        assert_eq!(sealed.set, vec![("cookie".to_owned(), b"a=\xfe".to_vec())]);
        assert_eq!(sealed.count(), 0);
        let untouched = seal(&[("cookie", b"a=1;b=2")], Strip::Tokens { keep: None });
        assert!(untouched.set.is_empty() && untouched.remove.is_empty());
    }

    #[test]
    fn a_referer_that_cannot_be_cleaned_is_removed() {
        let t = token(ISS);
        let referer = format!("https://shop.example/{t}/page");
        let sealed = seal(
            &[("referer", referer.as_bytes())],
            Strip::Tokens { keep: None },
        );
        assert_eq!(sealed.remove, vec!["referer"]);
    }

    #[test]
    fn trailers_holding_a_token_or_in_a_token_header_are_removed() {
        let t = token(ISS);
        let bearer = format!("Bearer {t}");
        let sealed = sealer().seal_trailers(
            [
                ("authorization", bearer.as_bytes()),
                ("x-blob", t.as_bytes()),
                ("grpc-status", b"0".as_slice()),
            ],
            Strip::Tokens { keep: None },
        );
        assert_eq!(sealed.remove, vec!["authorization", "x-blob"]);
        assert_eq!(
            sealed.places().collect::<Vec<_>>(),
            vec![(Place::Trailer, 2)]
        );
    }
}
