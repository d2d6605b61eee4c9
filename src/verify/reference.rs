//! The decode and signature check against the path they replaced.
//!
//! Up to mpass-guard 0.2 a token went through our strict checks
//! ([`Parsed::parse`]), then through jwt-compact 0.8 a second time
//! (`UntrustedToken::new`: base64ct, its header type, the signature part)
//! and its signature through jwt-compact's `Validator` (which parses the
//! claims once more, into its `Claims<Empty>`, before the check). Now one
//! pass does it all ([`Untrusted::decode`], then `Untrusted::validate`). That
//! old path is rebuilt here, with jwt-compact as a dev-dependency and the
//! same signature dispatch (`RingVerifier::verify_signature`) plugged in as
//! its `Algorithm`, and every token of a corpus and of a proptest must get
//! the same verdict from both, key by key: fixtures of every algorithm,
//! every header, claim and signature shape jwt-compact reads, the hostile
//! cases of `tests/attacks.rs`, and mutated tokens.

// Tests may panic: a panic is a failed test, not a crashed VM.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::borrow::Cow;
use std::marker::PhantomData;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jwt_compact::{Algorithm, AlgorithmExt as _, AlgorithmSignature, Empty, UntrustedToken};
use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::mint::{load_pem, public_jwk, sign_raw, SigningKey};

const MAX: usize = 16 * 1024;
const SECRET: &[u8] = b"client-secret-from-provider-config-0123456789";
const NOW: i64 = 1_795_694_400;
const ISS: &str = "https://mpass-proxy-test.csc.fi";

// ---- the old path ---------------------------------------------------------

struct OldSignature(Vec<u8>);

impl AlgorithmSignature for OldSignature {
    fn try_from_slice(slice: &[u8]) -> anyhow::Result<Self> {
        Ok(OldSignature(slice.to_vec()))
    }

    fn as_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.0)
    }
}

enum NoSigning {}

/// jwt-compact's view of our dispatch, as `verify.rs` had it.
struct Old<'k> {
    inner: RingVerifier,
    _key: PhantomData<&'k ()>,
}

impl<'k> Algorithm for Old<'k> {
    type SigningKey = NoSigning;
    type VerifyingKey = RingKey<'k>;
    type Signature = OldSignature;

    fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed(self.inner.alg.name())
    }

    fn sign(&self, signing_key: &NoSigning, _message: &[u8]) -> OldSignature {
        match *signing_key {}
    }

    fn verify_signature(&self, sig: &OldSignature, key: &RingKey<'k>, message: &[u8]) -> bool {
        self.inner.verify_signature(&sig.0, key, message)
    }
}

/// The old `Untrusted::decode`: our strict checks, then jwt-compact's parse.
fn old_decode(token: &str) -> Result<(Alg, UntrustedToken<'_>), TokenError> {
    let parsed = Parsed::parse(token, MAX)?;
    let untrusted = UntrustedToken::<Empty>::new(token).map_err(|_| TokenError::Malformed)?;
    if untrusted.algorithm() != parsed.alg.name() {
        return Err(TokenError::Malformed);
    }
    Ok((parsed.alg, untrusted))
}

/// The old `Untrusted::validate`.
fn old_validate(
    alg: Alg,
    token: &UntrustedToken<'_>,
    key: &RingKey<'_>,
    with: Verifiers,
) -> Result<(), TokenError> {
    let old = Old {
        inner: RingVerifier {
            alg,
            rsa: with.rsa,
            eddsa: with.eddsa,
            ec: with.ec,
        },
        _key: PhantomData,
    };
    match old.validator::<Empty>(key).validate(token) {
        Ok(_) => Ok(()),
        Err(jwt_compact::ValidationError::MalformedClaims(_)) => Err(TokenError::InvalidClaim),
        Err(_) => Err(TokenError::BadSignature),
    }
}

// ---- fixtures -------------------------------------------------------------

fn key_path(name: &str) -> String {
    format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn signing_key(alg: Alg) -> SigningKey {
    match alg.family() {
        KeyFamily::Rsa => load_pem(key_path("rsa-a.pem")).unwrap(),
        KeyFamily::EcP256 => load_pem(key_path("ec-p256.pem")).unwrap(),
        KeyFamily::Ed25519 => load_pem(key_path("ed25519.pem")).unwrap(),
        KeyFamily::Hmac => SigningKey::hmac(SECRET.to_vec()),
    }
}

fn material(file: &str) -> KeyMaterial {
    let jwk = public_jwk(&load_pem(key_path(file)).unwrap(), None, None).unwrap();
    let doc = serde_json::to_vec(&json!({ "keys": [jwk] })).unwrap();
    let (set, _) = KeySet::parse(&doc, &Alg::ALL).unwrap();
    set.keys()[0].material.clone()
}

struct Keys {
    public: Vec<KeyMaterial>,
}

fn keys() -> &'static Keys {
    static KEYS: std::sync::OnceLock<Keys> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| Keys {
        public: ["rsa-a.pem", "rsa-b.pem", "ec-p256.pem", "ed25519.pem"]
            .into_iter()
            .map(material)
            .collect(),
    })
}

fn token(alg: Alg, header: &str, payload: &str) -> String {
    sign_raw(
        alg,
        &signing_key(alg),
        header.as_bytes(),
        payload.as_bytes(),
    )
    .unwrap()
}

fn claims_json() -> String {
    json!({
        "iss": ISS,
        "sub": "pairwise-subject",
        "aud": "client-a",
        "iat": NOW - 10,
        "exp": NOW + 3600,
    })
    .to_string()
}

/// Old and new verdicts for `token`, against every key and secret (and
/// both RSA verifiers for RS*/PS*): decode refusals must be the same, and
/// then every signature verdict.
fn assert_same_verdicts(token: &str) {
    let new = Untrusted::decode(token, MAX);
    let old = old_decode(token);
    let (new, (alg, old)) = match (new, old) {
        (Err(n), Err(o)) => {
            assert_eq!(n, o, "decode of {token:.120}");
            return;
        }
        (Ok(n), Ok(o)) => (n, o),
        (n, o) => panic!(
            "decode of {token:.120}: new {:?}, old {:?}",
            n.map(|_| ()),
            o.map(|_| ())
        ),
    };
    assert_eq!(new.alg(), alg);
    assert_eq!(new.signature, old.signature_bytes(), "{token:.120}");
    let choices: Vec<Verifiers> = match alg.family() {
        KeyFamily::Rsa => vec![RsaVerifier::Fast.into(), RsaVerifier::Ring.into()],
        KeyFamily::Ed25519 => vec![EddsaVerifier::Fast.into(), EddsaVerifier::Ring.into()],
        KeyFamily::EcP256 => vec![EcVerifier::Fast.into(), EcVerifier::Ring.into()],
        _ => vec![Verifiers::default()],
    };
    let secrets: [&[u8]; 3] = [SECRET, b"another-secret", b""];
    let candidates = keys()
        .public
        .iter()
        .map(RingKey::Public)
        .chain(secrets.into_iter().map(RingKey::Secret));
    for key in candidates {
        for &with in &choices {
            assert_eq!(
                new.validate(&key, with),
                old_validate(alg, &old, &key, with),
                "{alg} {with:?} {token:.120}"
            );
        }
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

// ---- the corpus -----------------------------------------------------------

#[test]
fn every_algorithm_gets_the_same_verdicts_as_the_jwt_compact_path() {
    for alg in Alg::ALL {
        let header = format!(r#"{{"alg":"{}","kid":"k1"}}"#, alg.name());
        assert_same_verdicts(&token(alg, &header, &claims_json()));
    }
}

/// Every header member jwt-compact's `CompleteHeader<Empty>` reads, in the
/// shapes it accepts and refuses.
fn header_members() -> Vec<String> {
    let sha1 = b64(&[7u8; 20]);
    let sha256 = b64(&[9u8; 32]);
    let mut non_canonical_sha1 = sha1.clone().into_bytes();
    // 20 bytes: 27 characters, the last with 2 unused bits.
    *non_canonical_sha1.last_mut().unwrap() += 1;
    let non_canonical_sha1 = String::from_utf8(non_canonical_sha1).unwrap();
    let hex_sha1 = b64("0123456789abcdef0123456789abcdef01234567".as_bytes());
    let hex_sha256 = b64("0123456789abcdef".repeat(4).as_bytes());
    let mut members: Vec<String> = Vec::new();
    for cty in [
        r#""JWT""#,
        r#""jwt""#,
        r#""json""#,
        r#""JSON""#,
        r#""Json""#,
        r#""application/json""#,
        r#""""#,
        "null",
        "5",
        "[]",
        r#"{"a":1}"#,
        "true",
    ] {
        members.push(format!(r#""cty":{cty}"#));
    }
    for name in ["jku", "x5u", "kid", "typ"] {
        for v in [
            r#""https://attacker.example/x""#,
            "null",
            "5",
            "[]",
            "{}",
            "false",
            r#""""#,
        ] {
            members.push(format!(r#""{name}":{v}"#));
        }
    }
    for (name, good, hex) in [
        ("x5t", &sha1, &hex_sha1),
        ("x5t#S256", &sha256, &hex_sha256),
    ] {
        let n = good.len();
        let values = [
            format!(r#""{good}""#),
            format!(r#""{good}=""#),
            format!(r#""{good}==""#),
            format!(r#""{good}===""#),
            format!(r#""{}""#, &good[..n - 1]),
            format!(r#""{}""#, &good[..n - 2]),
            format!(r#""{good}A""#),
            format!(r#""{good}AA""#),
            format!(r#""{good}AAA""#),
            format!(r#""{good}AAAA""#),
            format!(r#""{hex}""#),
            format!(r#""{hex}=""#),
            format!(r#""{}""#, b64(&[0xff; 40])),
            format!(r#""{}""#, good.replace('A', "+")),
            format!(r#""{}""#, good.replacen(|c: char| c.is_ascii(), "/", 1)),
            format!(r#""{} ""#, good),
            format!(r#""={good}""#),
            r#""""#.to_owned(),
            "null".to_owned(),
            "20".to_owned(),
            "[]".to_owned(),
        ];
        for v in values {
            members.push(format!(r#""{name}":{v}"#));
        }
    }
    members.push(format!(r#""x5t":"{non_canonical_sha1}""#));
    for other in [
        r#""crit":["exp"]"#,
        r#""crit":[]"#,
        r#""crit":5"#,
        r#""jwk":{"kty":"RSA"}"#,
        r#""x5c":5"#,
        r#""b64":false"#,
        r#""zip":"DEF""#,
        r#""enc":"A128GCM""#,
        r#""nested":[[[[[[1]]]]]]"#,
        r#""alg":"RS256""#,
    ] {
        members.push(other.to_owned());
    }
    members
}

#[test]
fn every_header_member_jwt_compact_reads_gets_the_same_verdicts() {
    let claims = claims_json();
    for member in header_members() {
        for (alg, rest) in [(Alg::HS256, ""), (Alg::RS256, r#","kid":"k1""#)] {
            let header = format!(r#"{{"alg":"{}"{rest},{member}}}"#, alg.name());
            assert_same_verdicts(&token(alg, &header, &claims));
        }
        // The member first, and alone with `alg`.
        let header = format!(r#"{{{member},"alg":"HS256"}}"#);
        assert_same_verdicts(&token(Alg::HS256, &header, &claims));
    }
}

/// Claim shapes: the time claims jwt-compact's `Claims<Empty>` parses with
/// chrono, and the ones our decode checks itself.
fn claim_members() -> Vec<String> {
    let mut members = Vec::new();
    for name in ["exp", "nbf", "iat"] {
        for v in [
            "0",
            "-0",
            "-0.0",
            "1",
            "-1",
            "1.5",
            "0.5",
            "-0.5",
            "1e9",
            "1E9",
            "1e-300",
            "-1e-300",
            "1e300",
            "1e400",
            "1795694400",
            "1795694400.999999",
            "253402300799",
            "253402300799.5",
            "253402300800",
            "253402300798.5",
            "8210266876799",
            "8210266876800",
            "9223372036854775807",
            "9223372036854775808",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "99999999999999999999999",
            r#""1795694400""#,
            "null",
            "true",
            "[1]",
            r#"{"t":1}"#,
        ] {
            members.push(format!(r#""{name}":{v}"#));
        }
    }
    for (name, v) in [
        ("iss", "5"),
        ("iss", "null"),
        ("iss", r#"["x"]"#),
        ("sub", "42"),
        ("sub", "null"),
        ("aud", "5"),
        ("aud", "null"),
        ("aud", r#"["client-a",5]"#),
        ("aud", "[]"),
        ("aud", r#"{"a":1}"#),
        ("azp", r#"["client-a"]"#),
        ("azp", "null"),
        ("x", r#""\ud800""#),
        ("x", r#""\udc00\ud800""#),
        ("x", r#""\u0000""#),
        ("x", r#""caf\u00e9""#),
        ("x", "1.0e+2"),
        ("x", "123456789012345678901234567890"),
        ("", "1"),
        ("urn:mpass.id:x", r#"{"a":1,"b":[1,2,{"c":null}]}"#),
    ] {
        members.push(format!(r#""{name}":{v}"#));
    }
    for depth in [126, 127, 128, 129] {
        members.push(format!(
            r#""deep":{}{}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        ));
        members.push(format!(
            r#""deep":{}1{}"#,
            r#"{"a":"#.repeat(depth),
            "}".repeat(depth)
        ));
    }
    members
}

#[test]
fn every_claim_shape_gets_the_same_verdicts() {
    for member in claim_members() {
        for payload in [
            format!(r#"{{"iss":"{ISS}","aud":"client-a",{member}}}"#),
            format!(r#"{{{member}}}"#),
            format!(r#"{{"iss":"{ISS}","exp":{},{member}}}"#, NOW + 60),
        ] {
            assert_same_verdicts(&token(Alg::HS256, r#"{"alg":"HS256"}"#, &payload));
        }
        let payload = format!(r#"{{"iss":"{ISS}",{member}}}"#);
        assert_same_verdicts(&token(Alg::ES256, r#"{"alg":"ES256"}"#, &payload));
    }
    for payload in [
        "{}",
        " {}",
        "{} ",
        "\n{\"exp\":1}\n",
        "[]",
        "{\"exp\":1}{}",
        "{\"exp\":1,}",
        "{\"exp\":1,\"exp\":2}",
        "{\"exp\":1,\"a\":{\"b\":1,\"b\":2}}",
        "null",
        "\"str\"",
        "{\"exp\":01}",
        "{\"exp\":1.}",
        "{\"exp\":.5}",
        "{\"exp\":+1}",
        "{\"exp\":NaN}",
        "{\"exp\":Infinity}",
        "\u{feff}{}",
    ] {
        assert_same_verdicts(&token(Alg::HS256, r#"{"alg":"HS256"}"#, payload));
    }
}

#[test]
fn every_signature_spelling_gets_the_same_verdicts() {
    for alg in [
        Alg::RS256,
        Alg::PS256,
        Alg::ES256,
        Alg::EdDSA,
        Alg::HS256,
        Alg::HS512,
    ] {
        let header = format!(r#"{{"alg":"{}"}}"#, alg.name());
        let t = token(alg, &header, &claims_json());
        let (signed, s64) = t.rsplit_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(s64).unwrap();
        let mut last_bit = s64.to_owned().into_bytes();
        *last_bit.last_mut().unwrap() ^= 1;
        let last_bit = String::from_utf8(last_bit).unwrap();
        let mut flipped = sig.clone();
        flipped[3] ^= 0x10;
        let variants = [
            s64.to_owned(),
            format!("{s64}="),
            format!("{s64}=="),
            format!("{s64}A"),
            format!("{s64}AA"),
            format!("{s64}AAA"),
            format!("{s64}AAAA"),
            s64[..s64.len() - 1].to_owned(),
            s64[1..].to_owned(),
            last_bit,
            s64.replace('-', "+").replace('_', "/"),
            format!(" {s64}"),
            format!("{s64}\n"),
            s64.replacen(|c: char| c.is_ascii_alphanumeric(), "%", 1),
            b64(&flipped),
            b64(&sig[..sig.len() - 1]),
            b64(&[sig.as_slice(), &[0]].concat()),
            b64(&vec![0; sig.len()]),
            b64(&[0]),
            "A".to_owned(),
            "AA".to_owned(),
            String::new(),
        ];
        for v in variants {
            assert_same_verdicts(&format!("{signed}.{v}"));
        }
    }
}

#[test]
fn token_shapes_and_the_hostile_cases_of_the_attack_suite_get_the_same_verdicts() {
    let t = token(Alg::RS256, r#"{"alg":"RS256","kid":"k1"}"#, &claims_json());
    let p: Vec<&str> = t.split('.').collect();
    let now = format!(
        r#""iss":"{ISS}","aud":"shop","iat":{NOW},"exp":{}"#,
        NOW + 600
    );
    let mut cases = vec![
        format!("{}.{}", p[0], p[1]),
        format!("{t}.{}", p[2]),
        format!("{}.{}.{}.{}.{}", p[0], p[1], p[2], p[2], p[2]),
        format!("{t}."),
        format!(".{}.{}", p[1], p[2]),
        format!("{}..{}", p[0], p[2]),
        format!("{}.{}=.{}", p[0], p[1], p[2]),
        format!("{}\n.{}.{}", p[0], p[1], p[2]),
        String::new(),
        ".".to_owned(),
        "..".to_owned(),
        "a.b.c".to_owned(),
        "!".repeat(MAX + 1),
    ];
    for (h, c) in [
        (r#"{"alg":"none"}"#.to_owned(), format!("{{{now}}}")),
        (r#"{"alg":"NONE"}"#.to_owned(), format!("{{{now}}}")),
        (r#"{"kid":"rsa-a"}"#.to_owned(), format!("{{{now}}}")),
        (
            r#"{"alg":"RS384","kid":"rsa-a"}"#.to_owned(),
            format!("{{{now}}}"),
        ),
        (
            r#"{"alg":"RS256","kid":"../rsa-a"}"#.to_owned(),
            format!("{{{now}}}"),
        ),
        (
            format!(r#"{{"alg":"RS256","kid":"{}"}}"#, "k".repeat(10240)),
            format!("{{{now}}}"),
        ),
        (
            r#"{"alg":"RS256","kid":7}"#.to_owned(),
            format!("{{{now}}}"),
        ),
        (
            r#"{"alg":"RS256","crit":["x"]}"#.to_owned(),
            format!("{{{now}}}"),
        ),
        (
            r#"{"alg":"RS256","kid":"rsa-a"}"#.to_owned(),
            format!(r#"{{{now},"iss":"https://evil.example"}}"#),
        ),
        (
            r#"{"alg":"RS256","kid":"rsa-a"}"#.to_owned(),
            format!(r#"{{{now},"nbf":"1"}}"#),
        ),
        (
            r#"{"alg":"RS256","kid":"rsa-a"}"#.to_owned(),
            format!(r#"{{"iss":"{ISS}","aud":["shop",1],"exp":{}}}"#, NOW + 60),
        ),
        (
            r#"{"alg":"RS256","kid":"rsa-a"}"#.to_owned(),
            format!(r#"{{{now},"x":{}{}}}"#, "[".repeat(500), "]".repeat(500)),
        ),
        (
            r#"{"alg":"RS256","alg":"HS256"}"#.to_owned(),
            format!("{{{now}}}"),
        ),
        (r#"["RS256"]"#.to_owned(), format!("{{{now}}}")),
        (r#"{"alg":"RS256""#.to_owned(), format!("{{{now}}}")),
        (r#"{"alg":"RS256"}"#.to_owned(), "not json".to_owned()),
        (
            r#"{"alg":"RS256","typ":"at+jwt"}"#.to_owned(),
            format!("{{{now}}}"),
        ),
    ] {
        cases.push(token(Alg::RS256, &h, &c));
    }
    // alg: none with empty and non-empty signature parts.
    let body = b64(format!("{{{now}}}").as_bytes());
    for h in [r#"{"alg":"none"}"#, r#"{"alg":""}"#, r#"{"alg":null}"#] {
        cases.push(format!("{}.{body}.", b64(h.as_bytes())));
        cases.push(format!("{}.{body}.AAAA", b64(h.as_bytes())));
    }
    for c in cases {
        assert_same_verdicts(&c);
    }
}

// ---- mutated tokens -------------------------------------------------------

/// A token with some of the header and claim members above, signed HS256
/// (cheap to verify, so that many cases reach the signature check).
fn built_token() -> impl Strategy<Value = String> {
    let headers = header_members();
    let claims = claim_members();
    (
        proptest::sample::subsequence(headers.clone(), 0..3),
        proptest::sample::subsequence(claims.clone(), 0..4),
        any::<bool>(),
    )
        .prop_map(|(h, c, with_iss)| {
            let mut header = vec![r#""alg":"HS256""#.to_owned()];
            header.extend(h);
            let mut payload = Vec::new();
            if with_iss {
                payload.push(format!(r#""iss":"{ISS}""#));
            }
            payload.extend(c);
            token(
                Alg::HS256,
                &format!("{{{}}}", header.join(",")),
                &format!("{{{}}}", payload.join(",")),
            )
        })
}

/// One edit of a token's text: a character replaced, inserted or deleted.
#[derive(Debug, Clone)]
enum Edit {
    Replace(prop::sample::Index, char),
    Insert(prop::sample::Index, char),
    Delete(prop::sample::Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    let chars = prop::sample::select(
        "AQgwBeyJ0-_+/=.% \n\"{}zZ9\u{e9}"
            .chars()
            .collect::<Vec<_>>(),
    );
    prop_oneof![
        (any::<prop::sample::Index>(), chars.clone()).prop_map(|(i, c)| Edit::Replace(i, c)),
        (any::<prop::sample::Index>(), chars).prop_map(|(i, c)| Edit::Insert(i, c)),
        any::<prop::sample::Index>().prop_map(Edit::Delete),
    ]
}

fn apply(token: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    for e in edits {
        match e {
            Edit::Replace(i, c) if !chars.is_empty() => {
                let at = i.index(chars.len());
                chars[at] = *c;
            }
            Edit::Insert(i, c) => {
                let at = i.index(chars.len() + 1);
                chars.insert(at, *c);
            }
            Edit::Delete(i) if !chars.is_empty() => {
                let at = i.index(chars.len());
                chars.remove(at);
            }
            _ => {}
        }
    }
    chars.into_iter().collect()
}

/// A JSON text edited at one byte, kept as text: how a hand-made token
/// with a small mistake looks once signed.
fn edited_json(json: String, at: prop::sample::Index, c: char) -> String {
    let mut chars: Vec<char> = json.chars().collect();
    if !chars.is_empty() {
        let i = at.index(chars.len());
        chars[i] = c;
    }
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    #[test]
    fn built_and_mutated_tokens_get_the_same_verdicts(
        t in built_token(),
        edits in prop::collection::vec(edit(), 0..3),
    ) {
        assert_same_verdicts(&apply(&t, &edits));
    }

    #[test]
    fn tokens_signed_over_edited_json_get_the_same_verdicts(
        header_at in any::<prop::sample::Index>(),
        payload_at in any::<prop::sample::Index>(),
        which in 0u8..3,
        c in prop::sample::select("{}[]\",:0-1.eE \\u\"x".chars().collect::<Vec<_>>()),
    ) {
        let mut header = r#"{"alg":"HS256","kid":"k1","x5t":"BwcHBwcHBwcHBwcHBwcHBwcHBwc"}"#.to_owned();
        let mut payload = format!(
            r#"{{"iss":"{ISS}","aud":["client-a","b"],"exp":{},"nbf":1.5,"x":{{"y":[1,"z"]}}}}"#,
            NOW + 60
        );
        if which != 1 {
            header = edited_json(header, header_at, c);
        }
        if which != 0 {
            payload = edited_json(payload, payload_at, c);
        }
        assert_same_verdicts(&token(Alg::HS256, &header, &payload));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn mutated_public_key_tokens_get_the_same_verdicts(
        alg in prop::sample::select(vec![Alg::RS256, Alg::PS384, Alg::ES256, Alg::EdDSA]),
        edits in prop::collection::vec(edit(), 0..3),
    ) {
        let header = format!(r#"{{"alg":"{}","kid":"k1"}}"#, alg.name());
        let t = token(alg, &header, &claims_json());
        assert_same_verdicts(&apply(&t, &edits));
    }
}
