//! Header value encoding for released attributes.
//!
//! Claim values are UTF-8 (Finnish names carry ä, ö, å) and come from a
//! directory we do not control, so they may hold anything, including CR, LF
//! and NUL. Every encoding here produces **printable ASCII only**
//! (`0x20..=0x7e`, and never a leading or trailing space), so no control
//! character can reach a header value by construction, whatever the input.
//! Every encoding is one any upstream stack can read back exactly:
//!
//! - **single value**: UTF-8 percent-encoded as in RFC 3986: the unreserved
//!   characters `A-Z a-z 0-9 - . _ ~` are kept, every other byte becomes
//!   `%XX` (uppercase hex). `Öhman` is `%C3%96hman`. Read back with any
//!   `decodeURIComponent` / `urllib.parse.unquote` / [`decode_single`]. (Not
//!   form encoding: a space is `%20`, never `+`.)
//! - **multi value**: a JSON array of strings in one header, with every
//!   character outside printable ASCII written as a `\uXXXX` escape
//!   (surrogate pairs above U+FFFF), so any JSON parser reads it back exactly.
//!   Read back with [`decode_multi`].
//! - **payload**: base64url without padding of a JSON object (UTF-8) of the
//!   released claims only, keyed by canonical claim name. Read back with
//!   [`decode_payload`].

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};

use crate::http::{self, is_unreserved};

/// RFC 3986 recommends uppercase hex in percent encoding.
const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";
/// Lowercase for `\uXXXX`, as serde_json and JavaScript write it.
const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";

fn hex_digit_in(table: &[u8; 16], n: u8) -> char {
    char::from(table.get(usize::from(n & 0x0f)).copied().unwrap_or(b'0'))
}

fn hex_digit(n: u8) -> char {
    hex_digit_in(HEX_UPPER, n)
}

#[cfg(test)]
fn hex_digit_lower(n: u8) -> char {
    hex_digit_in(HEX_LOWER, n)
}

/// Percent-encodes one value (RFC 3986 unreserved characters kept).
pub fn encode_single(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    let mut rest = value;
    while !rest.is_empty() {
        // Runs of unreserved characters (ASCII, so char boundaries) are
        // copied whole; each other byte becomes `%XX`.
        let plain = rest
            .bytes()
            .position(|b| !is_unreserved(b))
            .unwrap_or(rest.len());
        let (run, tail) = rest.split_at_checked(plain).unwrap_or((rest, ""));
        out.push_str(run);
        // The escaped run ends at an unreserved (ASCII) byte or the end: a
        // char boundary again.
        let escaped = tail.bytes().position(is_unreserved).unwrap_or(tail.len());
        let (bytes, next) = tail.split_at_checked(escaped).unwrap_or((tail, ""));
        for b in bytes.bytes() {
            out.push('%');
            out.push(hex_digit(b >> 4));
            out.push(hex_digit(b));
        }
        rest = next;
    }
    out
}

/// [`encode_single`] as it was, byte by byte: the oracle for the
/// run-copying one.
#[cfg(test)]
fn encode_single_by_byte(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for b in value.bytes() {
        if is_unreserved(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(hex_digit(b >> 4));
            out.push(hex_digit(b));
        }
    }
    out
}

/// Reverses [`encode_single`]; `None` if the input is not valid percent
/// encoding of UTF-8.
pub fn decode_single(encoded: &str) -> Option<String> {
    String::from_utf8(http::percent_decode_strict(encoded)?).ok()
}

/// Writes `s` as a JSON string literal using printable ASCII only.
///
/// Runs of printable ASCII other than `"` and `\` (most of every value) are
/// copied whole; only the characters between them are escaped one by one.
fn push_json_ascii_string(out: &mut String, s: &str) {
    out.push('"');
    let mut rest = s;
    while !rest.is_empty() {
        let plain = rest
            .bytes()
            .position(|b| !matches!(b, b' '..=b'~') || b == b'"' || b == b'\\')
            .unwrap_or(rest.len());
        // `plain` is at an ASCII byte or the end: a char boundary.
        let (run, tail) = rest.split_at_checked(plain).unwrap_or((rest, ""));
        out.push_str(run);
        let mut chars = tail.chars();
        if let Some(c) = chars.next() {
            push_json_escaped_char(out, c);
        }
        rest = chars.as_str();
    }
    out.push('"');
}

/// One character of [`push_json_ascii_string`] outside its plain runs.
fn push_json_escaped_char(out: &mut String, c: char) {
    match c {
        '"' => out.push_str("\\\""),
        '\\' => out.push_str("\\\\"),
        ' '..='~' => out.push(c),
        _ => {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                // `\uXXXX` assembled whole, then pushed once.
                let mut escape = *b"\\u0000";
                for (digit, shift) in escape.iter_mut().skip(2).zip([12u16, 8, 4, 0]) {
                    // Truncation to the low nibble is the intent.
                    *digit = HEX_LOWER
                        .get(usize::from((*unit >> shift) & 0x0f))
                        .copied()
                        .unwrap_or(b'0');
                }
                out.push_str(std::str::from_utf8(&escape).unwrap_or("\\ufffd"));
            }
        }
    }
}

/// [`push_json_ascii_string`] as it was, character by character: the oracle
/// for the run-copying one.
#[cfg(test)]
fn push_json_ascii_string_by_char(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str("\\u");
                    for shift in [12u16, 8, 4, 0] {
                        // Truncation to the low nibble is the intent.
                        out.push(hex_digit_lower(((*unit >> shift) & 0x0f) as u8));
                    }
                }
            }
        }
    }
    out.push('"');
}

/// Encodes several values as an ASCII-only JSON array of strings.
pub fn encode_multi<S: AsRef<str>>(values: &[S]) -> String {
    let mut out =
        String::with_capacity(values.iter().map(|v| v.as_ref().len() + 3).sum::<usize>() + 2);
    out.push('[');
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_ascii_string(&mut out, v.as_ref());
    }
    out.push(']');
    out
}

/// Reverses [`encode_multi`].
pub fn decode_multi(encoded: &str) -> Option<Vec<String>> {
    serde_json::from_str(encoded).ok()
}

/// Encodes the payload header: base64url (no padding) of the JSON object.
pub fn encode_payload(released: &Map<String, Value>) -> String {
    // Serialising a map of strings cannot fail; an empty object is the safe
    // fallback all the same.
    let json = serde_json::to_vec(released).unwrap_or_else(|_| b"{}".to_vec());
    URL_SAFE_NO_PAD.encode(json)
}

/// Reverses [`encode_payload`].
pub fn decode_payload(encoded: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(encoded).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Whether `value` is safe as a header value: printable ASCII only, no
/// leading or trailing space. Every encoder in this module guarantees it.
pub fn is_safe_header_value(value: &str) -> bool {
    value.bytes().all(|b| (0x20..0x7f).contains(&b))
        && !value.starts_with(' ')
        && !value.ends_with(' ')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn finnish_names_round_trip_exactly_as_single_values() {
        for name in ["Äänekoski", "Öhman", "Pekka-Äijö", "Åland", "a b+c%d"] {
            let enc = encode_single(name);
            assert!(is_safe_header_value(&enc), "{enc}");
            assert_eq!(decode_single(&enc).as_deref(), Some(name));
        }
        assert_eq!(encode_single("Öhman"), "%C3%96hman");
        assert_eq!(encode_single("a b"), "a%20b");
    }

    #[test]
    fn finnish_names_round_trip_exactly_as_multi_values() {
        let values = vec![
            "04647;Äänekosken testilukio".to_owned(),
            "x;Öhman \"quoted\" \\ back".to_owned(),
            "Pekka-Äijö 😀".to_owned(),
        ];
        let enc = encode_multi(&values);
        assert!(is_safe_header_value(&enc), "{enc}");
        assert_eq!(decode_multi(&enc), Some(values));
        assert_eq!(encode_multi(&["Ä"]), "[\"\\u00c4\"]");
    }

    #[test]
    fn control_characters_never_appear_raw() {
        let nasty = "a\r\nX-Injected: 1\0\t\u{7f}\u{85}\u{2028}";
        for enc in [encode_single(nasty), encode_multi(&[nasty])] {
            assert!(is_safe_header_value(&enc), "{enc:?}");
            assert!(!enc.contains('\r') && !enc.contains('\n') && !enc.contains('\0'));
        }
        assert_eq!(decode_single(&encode_single(nasty)).as_deref(), Some(nasty));
        assert_eq!(
            decode_multi(&encode_multi(&[nasty])),
            Some(vec![nasty.to_owned()])
        );
    }

    #[test]
    fn payload_round_trips_and_is_ascii() {
        let mut m = Map::new();
        m.insert("family_name".into(), Value::String("Öhman\r\n".into()));
        m.insert("urn:mpass.id:role".into(), serde_json::json!(["a;b", "Ä"]));
        let enc = encode_payload(&m);
        assert!(is_safe_header_value(&enc));
        assert!(!enc.contains('='));
        assert_eq!(decode_payload(&enc), Some(m));
    }

    #[test]
    fn a_payload_with_a_long_number_reads_back_exactly() {
        // The render fuzz target found a long number that came back one ulp
        // off without serde_json's `float_roundtrip` (its input is kept in
        // fuzz/seeds/render/, replayed by every fuzz run).
        let m: Map<String, Value> = serde_json::from_str(
            r#"{"ge":3353533333333353533333333333333555,"f":0.30000000000000004}"#,
        )
        .unwrap();
        assert_eq!(decode_payload(&encode_payload(&m)), Some(m));
    }

    #[test]
    fn malformed_percent_encoding_is_rejected() {
        assert_eq!(decode_single("%C3"), None);
        assert_eq!(decode_single("%G0"), None);
        assert_eq!(decode_single("%4"), None);
    }

    proptest! {
        #[test]
        fn any_string_encodes_to_printable_ascii_and_back(s in any::<String>(), t in any::<String>()) {
            let single = encode_single(&s);
            prop_assert!(is_safe_header_value(&single));
            prop_assert_eq!(decode_single(&single), Some(s.clone()));
            let multi = encode_multi(&[s.clone(), t.clone()]);
        prop_assert_eq!(&single, &encode_single_by_byte(&s));
        let (mut runs, mut by_char) = (String::new(), String::new());
        push_json_ascii_string(&mut runs, &s);
        push_json_ascii_string_by_char(&mut by_char, &s);
        prop_assert_eq!(runs, by_char);
            prop_assert!(is_safe_header_value(&multi));
            prop_assert_eq!(decode_multi(&multi), Some(vec![s, t]));
        }
    }
}
