//! HTTP and URI syntax rules shared by the rest of the core: the RFC 9110
//! `token` rule for header and cookie names, the RFC 3986 unreserved set, and
//! the one percent-decoder, and which header names may carry an attribute
//! (never credentials, hop-by-hop, framing or proxy-owned headers).
//!
//! Every module that reads a name or an escape asks here, so the rule a
//! name is checked against at load is the rule it is matched with at request
//! time, and a `%XX` that one part of the filter decodes is decoded the same
//! way everywhere. Pure functions over bytes and strings; nothing here knows
//! about providers, tokens or the host.
//!
//! The decoders differ only in what they do with what is not a valid escape
//! and in which escapes they decode:
//! - [`percent_decode_bytes`]: every valid `%XX`, anything else kept as it is;
//!   no UTF-8 assumption, so nothing is lost.
//! - [`percent_decode_strict`]: every `%XX`, `None` on a `%` that does not
//!   start one (the reverse of a strict encoder).
//! - [`percent_decode_form`]: a query component, where `+` is a space.
//! - [`percent_decode_ascii_where`]: only the escapes of chosen ASCII
//!   characters (path normalisation decodes `.`, `/` and `\` and nothing
//!   else); [`percent_decode_unreserved`] is the RFC 3986 section 6.2.2.2 case.

/// An RFC 9110 `tchar`: a character a `token` (header name, cookie name) may
/// hold.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// An RFC 9110 `token`: one or more [`is_tchar`] characters. The rule for
/// header and cookie names.
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

/// A token without uppercase letters: the form header names take once
/// lowercased, as HTTP/2 and Envoy carry them.
pub fn is_lowercase_token(s: &str) -> bool {
    is_token(s) && !s.bytes().any(|b| b.is_ascii_uppercase())
}

/// An RFC 3986 unreserved character (`A-Z a-z 0-9 - . _ ~`): the ones a
/// percent-encoder keeps and a normaliser may decode.
pub fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The value of one hex digit, either case.
pub fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The byte an escape at the start of `s` stands for: `Some` only when `s`
/// starts with `%` and two hex digits. (Not `u8::from_str_radix`, which would
/// also read `%+F` as an escape.)
fn escape_at(s: &[u8]) -> Option<u8> {
    match s {
        [b'%', hi, lo, ..] => Some(hex_value(*hi)? << 4 | hex_value(*lo)?),
        _ => None,
    }
}

/// Decodes every valid `%XX` escape and keeps every other byte, including a
/// `%` that starts no escape, as it is. Works on bytes and returns bytes, so
/// nothing is replaced or lost whatever the input.
pub fn percent_decode_bytes(s: &[u8]) -> Vec<u8> {
    decode_with(s, |_| true, false)
}

/// Decodes `%XX` escapes; `None` if a `%` does not start two hex digits.
pub fn percent_decode_strict(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            out.push(escape_at(bytes.get(i..)?)?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Some(out)
}

/// Decodes a query component (`application/x-www-form-urlencoded`: `+` is a
/// space). Invalid escapes are kept literally; invalid UTF-8 is replaced,
/// which can only make a token fail verification, never pass.
pub fn percent_decode_form(s: &str) -> String {
    String::from_utf8_lossy(&decode_with(s.as_bytes(), |_| true, true)).into_owned()
}

/// Decodes only the escapes of ASCII characters `decode` accepts and keeps
/// every other byte (other escapes included) as it is. Since only ASCII is
/// ever produced, the result is as valid UTF-8 as the input.
pub fn percent_decode_ascii_where(s: &str, decode: impl Fn(u8) -> bool) -> String {
    let out = decode_with(s.as_bytes(), |c| c.is_ascii() && decode(c), false);
    // Replacing `%XX` by one ASCII byte keeps UTF-8 valid, so this is the
    // input with those escapes decoded; the lossy path is never taken.
    String::from_utf8_lossy(&out).into_owned()
}

/// Decodes only the escapes of RFC 3986 unreserved characters (the
/// normalisation of section 6.2.2.2: `%7E` is `~`, `%2F` stays `%2F`).
pub fn percent_decode_unreserved(s: &str) -> String {
    percent_decode_ascii_where(s, is_unreserved)
}

fn decode_with(bytes: &[u8], decode: impl Fn(u8) -> bool, plus_is_space: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match bytes.get(i..).and_then(escape_at).filter(|c| decode(*c)) {
            Some(c) => {
                out.push(c);
                i += 3;
            }
            None => {
                out.push(if plus_is_space && b == b'+' { b' ' } else { b });
                i += 1;
            }
        }
    }
    out
}

/// Headers that must never carry an attribute: credentials, hop-by-hop and
/// framing headers, and routing headers upstreams trust.
const FORBIDDEN_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "www-authenticate",
    "proxy-authenticate",
    "cookie",
    "set-cookie",
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "content-type",
    "content-encoding",
    "expect",
    "forwarded",
    "via",
    "x-real-ip",
    "x-request-id",
];

/// Prefixes owned by the proxy or by standards that upstreams trust.
const FORBIDDEN_PREFIXES: &[&str] = &["x-envoy-", "x-forwarded-", "proxy-"];

/// Checks a header name an attribute may be written to.
pub fn check_header_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("header name must not be empty".into());
    }
    if name.starts_with(':') {
        return Err(format!(
            "`{name}` is a pseudo-header and cannot carry an attribute"
        ));
    }
    if !is_lowercase_token(name) {
        return Err(format!(
            "header name `{}` must be lowercase token characters (a-z 0-9 !#$%&'*+-.^_`|~)",
            name.escape_debug()
        ));
    }
    if FORBIDDEN_HEADERS.contains(&name) || FORBIDDEN_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return Err(format!(
            "`{name}` is a credential, hop-by-hop or proxy header and cannot carry an attribute"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_one_or_more_tchars_and_nothing_else() {
        for good in ["x-mpass-uid", "Cookie", "a", "!#$%&'*+-.^_`|~09"] {
            assert!(is_token(good), "{good:?}");
        }
        for bad in ["", "a b", "a:b", "a\r", "ä", "a/b", "(a)", "\"a\""] {
            assert!(!is_token(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_lowercase_token_refuses_capitals_only() {
        assert!(is_lowercase_token("x-mpass-uid"));
        assert!(!is_lowercase_token("X-Mpass-Uid"));
        assert!(!is_lowercase_token(""));
    }

    #[test]
    fn the_bytes_decoder_keeps_what_is_no_escape_and_loses_nothing() {
        assert_eq!(percent_decode_bytes(b"%C3%96hman"), "Öhman".as_bytes());
        assert_eq!(percent_decode_bytes(b"%ff%FE"), [0xff, 0xfe]);
        for kept in ["%", "%4", "%G0", "%+F", "a+b", "100%"] {
            assert_eq!(percent_decode_bytes(kept.as_bytes()), kept.as_bytes());
        }
    }

    #[test]
    fn the_strict_decoder_refuses_a_percent_that_starts_no_escape() {
        assert_eq!(percent_decode_strict("a%20b"), Some(b"a b".to_vec()));
        for bad in ["%", "%4", "%G0", "%+F", "a%"] {
            assert_eq!(percent_decode_strict(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_form_decoder_reads_plus_as_space_but_an_escaped_plus_as_plus() {
        assert_eq!(percent_decode_form("a+b%2Bc"), "a b+c");
        assert_eq!(percent_decode_form("%zz%"), "%zz%");
        assert_eq!(percent_decode_form("%FF"), "\u{fffd}");
    }

    #[test]
    fn the_chosen_ascii_decoder_leaves_other_escapes_alone() {
        let dots = |c| matches!(c, b'.' | b'/' | b'\\');
        assert_eq!(
            percent_decode_ascii_where("/%2e%2E%2f%5C%41%C3%96ä", dots),
            "/../\\%41%C3%96ä"
        );
        assert_eq!(percent_decode_unreserved("%7E%41%2F%20"), "~A%2F%20");
    }
}
