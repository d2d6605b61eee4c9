//! Verification key sets: parsing a JWKS document into checked key material,
//! and choosing which keys may verify a token with a given `alg` and `kid`.
//!
//! No I/O happens here: the glue fetches the JWKS bytes and hands them in.
//! Parsing is deliberately lenient per key and strict per set: a key we cannot
//! or must not use is skipped with a warning (so one odd key published by an
//! identity provider does not take the whole provider down), but a set with no
//! usable key at all is an error.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::digest;
use serde_json::{Map, Value};

use crate::alg::{Alg, KeyFamily};
use crate::ed25519_fast::Ed25519PublicKey;
use crate::p256_fast::EcPublicKey;
use crate::rsa_fast::{
    exponent_allowed, RsaPublicKey, MAX_BITS, MAX_EXPONENT, MIN_BITS, MIN_EXPONENT,
};

/// At most this many entries of a JWKS `keys` array are considered. Real
/// identity providers publish a handful; a huge set is either a mistake or an
/// attempt to make every token verification try many keys.
pub const MAX_KEYS: usize = 64;

/// A `kid` longer than this many bytes is not a key id we will compare against.
pub const MAX_KID_BYTES: usize = 256;

/// Public key material in the form the verifiers use (ring; `rsa_fast` for RSA).
#[derive(Clone, PartialEq, Eq)]
pub enum KeyMaterial {
    /// An RSA public key: modulus and public exponent, big-endian, without
    /// leading zero bytes.
    Rsa {
        /// Modulus `n`.
        n: Vec<u8>,
        /// Public exponent `e`.
        e: Vec<u8>,
        /// The same key with its Montgomery constants, computed once at
        /// parse time: what signatures are verified with.
        public: RsaPublicKey,
    },
    /// A P-256 public point in uncompressed form: `0x04 || x || y` (65 bytes).
    EcP256 {
        /// The uncompressed point.
        point: Vec<u8>,
        /// The same point, validated at parse time (coordinates below p, on
        /// the curve, as ring checks), with its table of multiples for
        /// `p256_fast`, built on the key's first verification.
        public: EcPublicKey,
    },
    /// An Ed25519 public key (32 bytes).
    Ed25519 {
        /// The public key bytes.
        public: [u8; 32],
        /// The same key, decoded once at parse time (its table of
        /// multiples is built on its first use): what signatures are
        /// verified with (`eddsa_verifier` `fast`). A key whose bytes are
        /// no curve point is kept, as ring keeps it, and verifies nothing.
        precomputed: Ed25519PublicKey,
    },
}

// Key bytes are public, but a Debug that prints only the shape keeps logs short
// and keeps the habit of never dumping key or token bytes.
impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyMaterial::Rsa { n, .. } => write!(f, "Rsa({} bits)", rsa_bits(n)),
            KeyMaterial::EcP256 { .. } => f.write_str("EcP256"),
            KeyMaterial::Ed25519 { .. } => f.write_str("Ed25519"),
        }
    }
}

impl KeyMaterial {
    /// The key family this material belongs to.
    pub fn family(&self) -> KeyFamily {
        match self {
            KeyMaterial::Rsa { .. } => KeyFamily::Rsa,
            KeyMaterial::EcP256 { .. } => KeyFamily::EcP256,
            KeyMaterial::Ed25519 { .. } => KeyFamily::Ed25519,
        }
    }
}

/// One usable verification key from a JWKS (or built directly).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    /// The JWK `kid`, if any.
    pub kid: Option<String>,
    /// The JWK `alg`, if declared: then the key verifies only that algorithm.
    pub alg: Option<Alg>,
    /// The public key itself.
    pub material: KeyMaterial,
}

impl VerifyingKey {
    /// True if this key may verify a token whose header says `alg`: same key
    /// family, and the same algorithm if the key declared one.
    pub fn accepts(&self, alg: Alg) -> bool {
        self.material.family() == alg.family() && self.alg.is_none_or(|a| a == alg)
    }

    /// SHA-256 over a canonical, length-prefixed encoding of kid, alg and key
    /// material. Equal keys have equal fingerprints.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(b"mpass-guard key v1\0");
        put_field(&mut ctx, self.kid.as_deref().map(str::as_bytes));
        put_field(&mut ctx, self.alg.map(|a| a.name().as_bytes()));
        match &self.material {
            KeyMaterial::Rsa { n, e, .. } => {
                put_field(&mut ctx, Some(b"RSA"));
                put_field(&mut ctx, Some(n));
                put_field(&mut ctx, Some(e));
            }
            KeyMaterial::EcP256 { point, .. } => {
                put_field(&mut ctx, Some(b"EC P-256"));
                put_field(&mut ctx, Some(point));
            }
            KeyMaterial::Ed25519 { public, .. } => {
                put_field(&mut ctx, Some(b"OKP Ed25519"));
                put_field(&mut ctx, Some(public));
            }
        }
        finish(ctx)
    }
}

/// Feeds one optional field into a digest so that no two different field
/// sequences encode to the same bytes (tag + 8-byte length + bytes).
fn put_field(ctx: &mut digest::Context, field: Option<&[u8]>) {
    match field {
        None => ctx.update(&[0]),
        Some(bytes) => {
            ctx.update(&[1]);
            ctx.update(&(bytes.len() as u64).to_be_bytes());
            ctx.update(bytes);
        }
    }
}

fn finish(ctx: digest::Context) -> [u8; 32] {
    let mut out = [0u8; 32];
    let d = ctx.finish();
    for (o, b) in out.iter_mut().zip(d.as_ref()) {
        *o = *b;
    }
    out
}

/// Why a JWKS document could not be used at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksError {
    /// The document is not JSON.
    NotJson,
    /// The document is JSON but not an object with a `keys` array.
    NotAJwks,
    /// No key in the set is usable with the allowed algorithms.
    NoUsableKey,
}

impl fmt::Display for JwksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JwksError::NotJson => "jwks is not json",
            JwksError::NotAJwks => "jwks is not an object with a keys array",
            JwksError::NoUsableKey => "jwks has no usable signing key for the allowed algorithms",
        })
    }
}

impl std::error::Error for JwksError {}

/// A checked set of verification keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    keys: Vec<VerifyingKey>,
    /// Per-key fingerprints, computed once: the token cache checks on every
    /// hit that the key which verified a token is still in the set.
    prints: Vec<[u8; 32]>,
}

impl KeySet {
    /// Parses a JWKS document, keeping only keys usable with `allowed`.
    ///
    /// Returns the set and one warning per skipped key (the warnings name the
    /// key by index and `kid`, never by key material). Fails if the document
    /// is not a JWKS or no key is usable.
    pub fn parse(json: &[u8], allowed: &[Alg]) -> Result<(KeySet, Vec<String>), JwksError> {
        let (keys, warnings) = parse_keys(json, allowed)?;
        if keys.is_empty() {
            return Err(JwksError::NoUsableKey);
        }
        Ok((KeySet::from_keys(keys), warnings))
    }

    /// Builds a set from keys checked elsewhere (tests, statically configured keys).
    pub fn from_keys(keys: Vec<VerifyingKey>) -> KeySet {
        let prints = keys.iter().map(VerifyingKey::fingerprint).collect();
        KeySet { keys, prints }
    }

    /// True if a key with this fingerprint is in the set.
    pub fn contains(&self, fingerprint: &[u8; 32]) -> bool {
        self.prints.iter().any(|p| p == fingerprint)
    }

    /// [`VerifyingKey::fingerprint`] of `key`, from the prints computed when
    /// the set was built if `key` is one of this set's own (as the keys
    /// [`KeySet::candidates`] hands out are): a cold decision does not hash
    /// the key again. Any other key is hashed.
    pub fn fingerprint_of(&self, key: &VerifyingKey) -> [u8; 32] {
        self.keys
            .iter()
            .position(|k| std::ptr::eq(k, key))
            .and_then(|i| self.prints.get(i))
            .copied()
            .unwrap_or_else(|| key.fingerprint())
    }

    /// Builds now every per-key table a verification would otherwise build
    /// on the key's first token (P-256's multiples of the key, and the
    /// generator's once per VM; Ed25519's multiples of the key, ~2 ms each
    /// in V8), so no user's request pays for it. Returns
    /// how many tables were built; 0 when all were built already (cheap:
    /// a check per key).
    pub fn precompute_tables(&self) -> usize {
        let mut built = 0;
        for key in &self.keys {
            if let KeyMaterial::EcP256 { public, .. } = &key.material {
                if !public.is_precomputed() {
                    crate::p256_fast::precompute_generator();
                    built += usize::from(public.precompute());
                }
            }
            // A key that is no curve point has no table (it verifies
            // nothing, as in ring): `precompute` is false and nothing is built.
            if let KeyMaterial::Ed25519 { precomputed, .. } = &key.material {
                if precomputed.is_point() && !precomputed.is_precomputed() {
                    built += usize::from(precomputed.precompute());
                }
            }
        }
        built
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True if the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys, in document order.
    pub fn keys(&self) -> &[VerifyingKey] {
        &self.keys
    }

    /// The `kid`s of the keys that have one, in document order.
    pub fn kids(&self) -> Vec<&str> {
        self.keys.iter().filter_map(|k| k.kid.as_deref()).collect()
    }

    /// SHA-256 over the sorted per-key fingerprints: equal for two sets with
    /// the same keys whatever their order, for cache invalidation.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut prints = self.prints.clone();
        prints.sort_unstable();
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(b"mpass-guard keyset v1\0");
        ctx.update(&(prints.len() as u64).to_be_bytes());
        for p in &prints {
            ctx.update(p);
        }
        finish(ctx)
    }

    /// The keys that may verify a token with header `alg` and `kid`.
    ///
    /// With a `kid`, the keys with exactly that `kid` are the candidates; if
    /// there are none, keys published without any `kid` are tried (as Envoy's
    /// `jwt_authn` does: some providers omit `kid` in their JWKS). A token
    /// naming a key we do not have and no kid-less key exists fails as an
    /// unknown key (which may prompt a JWKS refresh) rather than being tried
    /// against every key. Without a `kid`, every key of the algorithm's family
    /// is a candidate. In all cases a key that declared an `alg` is a
    /// candidate only for that alg. HMAC algorithms never have candidates:
    /// JWKS keys are public.
    pub fn candidates<'a>(&'a self, alg: Alg, kid: Option<&str>) -> Vec<&'a VerifyingKey> {
        let usable = self.keys.iter().filter(|k| k.accepts(alg));
        match kid {
            None => usable.collect(),
            Some(want) => {
                let exact: Vec<&VerifyingKey> = usable
                    .clone()
                    .filter(|k| k.kid.as_deref() == Some(want))
                    .collect();
                if exact.is_empty() {
                    usable.filter(|k| k.kid.is_none()).collect()
                } else {
                    exact
                }
            }
        }
    }
}

/// Parses a JWKS document into its usable keys and the warnings for skipped
/// ones, without requiring any key to be usable. [`KeySet::parse`] is this plus
/// the "at least one key" rule; the glue may call this to log why a set that
/// failed had no usable key.
pub fn parse_keys(
    json: &[u8],
    allowed: &[Alg],
) -> Result<(Vec<VerifyingKey>, Vec<String>), JwksError> {
    let doc: Value = serde_json::from_slice(json).map_err(|_| JwksError::NotJson)?;
    let entries = doc
        .as_object()
        .and_then(|o| o.get("keys"))
        .and_then(Value::as_array)
        .ok_or(JwksError::NotAJwks)?;

    let mut keys = Vec::new();
    let mut warnings = Vec::new();
    for (i, entry) in entries.iter().enumerate().take(MAX_KEYS) {
        match parse_jwk(entry, allowed) {
            Ok(key) => keys.push(key),
            Err((why, label)) => warnings.push(format!("jwks key {i}{label}: skipped: {why}")),
        }
    }
    if entries.len() > MAX_KEYS {
        warnings.push(format!(
            "jwks has {} keys: only the first {MAX_KEYS} were considered",
            entries.len()
        ));
    }
    Ok((keys, warnings))
}

/// Returns the key, or (why it is skipped, printable kid label).
fn parse_jwk(entry: &Value, allowed: &[Alg]) -> Result<VerifyingKey, (String, String)> {
    let Some(obj) = entry.as_object() else {
        return Err(("not a json object".into(), String::new()));
    };
    let kid = match obj.get("kid") {
        None => None,
        Some(Value::String(s)) if s.len() <= MAX_KID_BYTES => Some(s.clone()),
        Some(Value::String(s)) => {
            return Err((
                format!("kid is {} bytes, over {MAX_KID_BYTES}", s.len()),
                String::new(),
            ))
        }
        Some(_) => return Err(("kid is not a string".into(), String::new())),
    };
    // Debug formatting escapes quotes and control characters, so a hostile kid
    // cannot forge log lines.
    let label = kid
        .as_ref()
        .map_or(String::new(), |k| format!(" (kid {k:?})"));
    let bail = |why: &str| Err((why.to_owned(), label.clone()));

    let kty = match obj.get("kty") {
        Some(Value::String(s)) => s.as_str(),
        _ => return bail("kty missing or not a string"),
    };
    if kty == "oct" {
        // A symmetric key published in a JWKS is public to everyone: never
        // accept it. HMAC secrets come only from provider configuration.
        return bail("kty oct: symmetric keys are never taken from a jwks");
    }
    match obj.get("use") {
        None => {}
        Some(Value::String(u)) if u == "sig" => {}
        Some(Value::String(_)) => return bail("use is not sig"),
        Some(_) => return bail("use is not a string"),
    }
    if let Some(ops) = obj.get("key_ops") {
        let verifies = ops
            .as_array()
            .is_some_and(|a| a.iter().any(|o| o.as_str() == Some("verify")));
        if !verifies {
            return bail("key_ops does not include verify");
        }
    }
    if obj.contains_key("d") || obj.contains_key("p") || obj.contains_key("k") {
        // A JWKS that publishes private material means the key is compromised;
        // anyone could sign with it.
        return bail("contains private key material");
    }

    let family = match kty {
        "RSA" => KeyFamily::Rsa,
        "EC" => KeyFamily::EcP256,
        "OKP" => KeyFamily::Ed25519,
        _ => return bail("unsupported kty"),
    };
    let alg = match obj.get("alg") {
        None => None,
        Some(Value::String(name)) => match Alg::from_name(name) {
            Some(a) if !allowed.contains(&a) => return bail("alg is not allowed"),
            Some(a) if a.family() != family => return bail("alg does not fit the key type"),
            Some(a) => Some(a),
            None => return bail("unsupported alg"),
        },
        Some(_) => return bail("alg is not a string"),
    };
    if !allowed.iter().any(|a| a.family() == family) {
        return bail("no allowed algorithm uses this key type");
    }

    let material = match family {
        KeyFamily::Rsa => rsa_material(obj).map_err(|w| (w, label.clone()))?,
        KeyFamily::EcP256 => ec_material(obj).map_err(|w| (w, label.clone()))?,
        KeyFamily::Ed25519 => okp_material(obj).map_err(|w| (w, label.clone()))?,
        KeyFamily::Hmac => return bail("unsupported kty"),
    };
    Ok(VerifyingKey { kid, alg, material })
}

fn member_bytes(obj: &Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    match obj.get(name) {
        Some(Value::String(s)) => {
            decode_b64url_strict(s).ok_or_else(|| format!("{name} is not valid base64url"))
        }
        Some(_) => Err(format!("{name} is not a string")),
        None => Err(format!("{name} is missing")),
    }
}

fn strip_leading_zeros(bytes: &[u8]) -> Vec<u8> {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or_default().to_vec()
}

fn rsa_bits(n: &[u8]) -> usize {
    match n.first() {
        None => 0,
        Some(top) => (n.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
    }
}

fn rsa_material(obj: &Map<String, Value>) -> Result<KeyMaterial, String> {
    // Some publishers prefix a zero byte (a signed big-endian habit); ring
    // wants the minimal form, so strip it rather than refuse the key.
    let n = strip_leading_zeros(&member_bytes(obj, "n")?);
    let e = strip_leading_zeros(&member_bytes(obj, "e")?);
    let bits = rsa_bits(&n);
    // The limits are the RSA verifier's (`rsa_fast`), so a key is skipped at
    // load, with a reason, exactly when it could never verify a token.
    if bits < MIN_BITS {
        return Err(format!("rsa modulus is {bits} bits, under {MIN_BITS}"));
    }
    if bits > MAX_BITS {
        return Err(format!("rsa modulus is {bits} bits, over {MAX_BITS}"));
    }
    if !exponent_allowed(&e) {
        return Err(format!(
            "rsa exponent is not an odd value from {MIN_EXPONENT} to {MAX_EXPONENT}"
        ));
    }
    let public = RsaPublicKey::new(&n, &e).ok_or("rsa modulus is even")?;
    Ok(KeyMaterial::Rsa { n, e, public })
}

fn ec_material(obj: &Map<String, Value>) -> Result<KeyMaterial, String> {
    match obj.get("crv").and_then(Value::as_str) {
        Some("P-256") => {}
        _ => return Err("unsupported crv for kty EC".into()),
    }
    let x = member_bytes(obj, "x")?;
    let y = member_bytes(obj, "y")?;
    if x.len() != 32 || y.len() != 32 {
        return Err("P-256 coordinates are not 32 bytes".into());
    }
    let mut point = Vec::with_capacity(65);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    // ring refuses such a point on every verification; refusing it here
    // skips the key once, with a reason, whichever `ec_verifier` is chosen.
    let public =
        EcPublicKey::new(&point).ok_or("P-256 point is not on the curve or out of range")?;
    Ok(KeyMaterial::EcP256 { point, public })
}

fn okp_material(obj: &Map<String, Value>) -> Result<KeyMaterial, String> {
    match obj.get("crv").and_then(Value::as_str) {
        Some("Ed25519") => {}
        _ => return Err("unsupported crv for kty OKP".into()),
    }
    let x = member_bytes(obj, "x")?;
    let public: [u8; 32] = x
        .as_slice()
        .try_into()
        .map_err(|_| "Ed25519 key is not 32 bytes".to_owned())?;
    // Bytes that are no curve point are not refused here: ring refuses them
    // only when verifying (every signature fails, `bad_signature`), and
    // refusing them at parse would turn that into `unknown_key` and could
    // leave a provider with no key set. `Ed25519PublicKey` keeps that rule.
    Ok(KeyMaterial::Ed25519 {
        public,
        precomputed: Ed25519PublicKey::new(public),
    })
}

/// Decodes base64url strictly: only the URL-safe alphabet, no padding, no
/// whitespace, and canonical (unused trailing bits must be zero), so each
/// byte string has exactly one accepted encoding.
pub(crate) fn decode_b64url_strict(s: &str) -> Option<Vec<u8>> {
    // URL_SAFE_NO_PAD refuses every byte outside the URL-safe alphabet
    // (its decode table), padding, and non-zero trailing bits: a separate
    // pass over the alphabet first cost ~16k instructions per cold token
    // (callgrind) and refused nothing more, as the test below shows byte
    // by byte.
    URL_SAFE_NO_PAD.decode(s).ok()
}

#[cfg(test)]
// Tests may panic: a panic is a failed test, not a crashed VM.
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;
    use crate::mint::{load_pem, public_jwk};
    use serde_json::json;

    fn key_path(name: &str) -> String {
        format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    fn jwk(name: &str, kid: &str) -> Value {
        let key = load_pem(key_path(name)).unwrap();
        public_jwk(&key, Some(kid), None).unwrap()
    }

    fn jwks(keys: Vec<Value>) -> Vec<u8> {
        serde_json::to_vec(&json!({ "keys": keys })).unwrap()
    }

    const ALL: &[Alg] = &Alg::ALL;

    #[test]
    fn rsa_ec_and_ed25519_keys_from_a_jwks_are_all_usable() {
        let doc = jwks(vec![
            jwk("rsa-a.pem", "a"),
            jwk("ec-p256.pem", "ec"),
            jwk("ed25519.pem", "ed"),
        ]);
        let (set, warnings) = KeySet::parse(&doc, ALL).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(set.len(), 3);
        assert_eq!(set.kids(), vec!["a", "ec", "ed"]);
    }

    #[test]
    fn unusable_keys_are_skipped_with_a_warning_naming_only_the_kid() {
        let small: Value = serde_json::from_str(
            &std::fs::read_to_string(key_path("rsa-1024.public.jwk.json")).unwrap(),
        )
        .unwrap();
        let mut enc = jwk("rsa-b.pem", "enc");
        enc["use"] = json!("enc");
        let oct = json!({"kty": "oct", "kid": "oct", "k": "c2VjcmV0"});
        let mut curve = jwk("ec-p256.pem", "p384");
        curve["crv"] = json!("P-384");
        let mut not_allowed = jwk("rsa-b.pem", "ps");
        not_allowed["alg"] = json!("PS256");
        let mut bad_b64 = jwk("rsa-b.pem", "pad");
        bad_b64["e"] = json!("AQAB==");
        let mut wrong_family = jwk("ec-p256.pem", "fam");
        wrong_family["alg"] = json!("RS256");
        let cases = [
            (small, "rsa-1024", "1024 bits"),
            (enc, "enc", "use is not sig"),
            (oct, "oct", "symmetric"),
            (curve, "p384", "unsupported crv"),
            (not_allowed, "ps", "alg is not allowed"),
            (bad_b64, "pad", "not valid base64url"),
            (wrong_family, "fam", "alg does not fit the key type"),
            (
                json!({"kty": "OKP", "crv": "X25519", "x": "AA"}),
                "",
                "unsupported crv",
            ),
            (json!({"kty": "dsa", "kid": "d"}), "d", "unsupported kty"),
        ];
        for (bad, kid, why) in cases {
            let doc = jwks(vec![jwk("rsa-a.pem", "good"), bad]);
            let (set, warnings) =
                KeySet::parse(&doc, &[Alg::RS256, Alg::ES256, Alg::EdDSA]).unwrap();
            assert_eq!(set.kids(), vec!["good"], "{why}");
            assert_eq!(warnings.len(), 1, "{why}: {warnings:?}");
            let w = &warnings[0];
            assert!(w.contains(why), "{w}");
            if !kid.is_empty() {
                assert!(w.contains(&format!("{kid:?}")), "{w}");
            }
            assert!(
                !w.contains("AQAB"),
                "warning must not carry key material: {w}"
            );
        }
    }

    #[test]
    fn a_key_whose_family_no_allowed_algorithm_uses_is_skipped() {
        let doc = jwks(vec![jwk("rsa-a.pem", "a"), jwk("ed25519.pem", "ed")]);
        let (set, warnings) = KeySet::parse(&doc, &[Alg::RS256]).unwrap();
        assert_eq!(set.kids(), vec!["a"]);
        assert!(warnings[0].contains("no allowed algorithm"), "{warnings:?}");
    }

    #[test]
    fn a_jwks_with_no_usable_key_is_an_error() {
        let doc = jwks(vec![json!({"kty": "oct", "k": "c2VjcmV0"})]);
        assert_eq!(KeySet::parse(&doc, ALL), Err(JwksError::NoUsableKey));
        let doc = jwks(vec![jwk("rsa-a.pem", "a")]);
        assert_eq!(
            KeySet::parse(&doc, &[Alg::HS256]),
            Err(JwksError::NoUsableKey)
        );
        assert_eq!(
            KeySet::parse(b"{\"keys\":[]}", ALL),
            Err(JwksError::NoUsableKey)
        );
    }

    #[test]
    fn documents_that_are_not_a_jwks_are_errors() {
        assert_eq!(KeySet::parse(b"not json", ALL), Err(JwksError::NotJson));
        for doc in [&b"[]"[..], b"{}", b"{\"keys\":{}}", b"\"keys\""] {
            assert_eq!(KeySet::parse(doc, ALL), Err(JwksError::NotAJwks));
        }
    }

    #[test]
    fn overlong_kid_and_published_private_keys_are_skipped() {
        let mut long = jwk("rsa-b.pem", "x");
        long["kid"] = json!("k".repeat(MAX_KID_BYTES + 1));
        let mut private = jwk("rsa-b.pem", "priv");
        private["d"] = json!("AQAB");
        let doc = jwks(vec![jwk("rsa-a.pem", "a"), long, private]);
        let (set, warnings) = KeySet::parse(&doc, ALL).unwrap();
        assert_eq!(set.kids(), vec!["a"]);
        assert!(warnings[0].contains("over 256"), "{warnings:?}");
        assert!(warnings[1].contains("private"), "{warnings:?}");
    }

    #[test]
    fn only_the_first_64_keys_are_considered() {
        let one = jwk("ed25519.pem", "ed");
        let doc = jwks(vec![one; MAX_KEYS + 3]);
        let (set, warnings) = KeySet::parse(&doc, ALL).unwrap();
        assert_eq!(set.len(), MAX_KEYS);
        assert!(warnings[0].contains("only the first 64"), "{warnings:?}");
    }

    #[test]
    fn precomputing_a_key_sets_tables_builds_each_ec_table_once_and_leaves_other_keys_alone() {
        let doc = jwks(vec![jwk("rsa-a.pem", "a"), jwk("ec-p256.pem", "ec")]);
        let (set, _) = KeySet::parse(&doc, ALL).unwrap();
        let ec = |set: &KeySet| match &set.keys()[1].material {
            KeyMaterial::EcP256 { public, .. } => public.is_precomputed(),
            other => panic!("{other:?}"),
        };
        assert!(!ec(&set));
        assert_eq!(set.precompute_tables(), 1);
        assert!(ec(&set));
        assert_eq!(set.precompute_tables(), 0);
    }

    #[test]
    fn precomputing_a_key_sets_tables_builds_each_ed25519_table_once() {
        let doc = jwks(vec![jwk("ed25519.pem", "ed"), jwk("rsa-a.pem", "a")]);
        let (set, _) = KeySet::parse(&doc, ALL).unwrap();
        let ed = |set: &KeySet| match &set.keys()[0].material {
            KeyMaterial::Ed25519 { precomputed, .. } => precomputed.is_precomputed(),
            other => panic!("{other:?}"),
        };
        assert!(!ed(&set));
        assert_eq!(set.precompute_tables(), 1);
        assert!(ed(&set));
        assert_eq!(set.precompute_tables(), 0);
    }

    #[test]
    fn a_zero_prefixed_modulus_is_accepted_in_minimal_form() {
        let mut k = jwk("rsa-a.pem", "a");
        let n = decode_b64url_strict(k["n"].as_str().unwrap()).unwrap();
        let mut padded = vec![0u8];
        padded.extend_from_slice(&n);
        k["n"] = json!(URL_SAFE_NO_PAD.encode(&padded));
        let (set, _) = KeySet::parse(&jwks(vec![k]), ALL).unwrap();
        match &set.keys()[0].material {
            KeyMaterial::Rsa { n: got, .. } => assert_eq!(got, &n),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rsa_keys_outside_the_verifiers_limits_are_refused_with_its_numbers() {
        let good = jwk("rsa-a.pem", "k");
        let n = decode_b64url_strict(good["n"].as_str().unwrap()).unwrap();
        let e = decode_b64url_strict(good["e"].as_str().unwrap()).unwrap();
        let odd_of_bits = |bits: usize| {
            let mut m = vec![0xffu8; bits.div_ceil(8)];
            m[0] = 0xff >> (m.len() * 8 - bits);
            m
        };
        let be = |v: u64| strip_leading_zeros(&v.to_be_bytes());
        let under = format!("{} bits, under {MIN_BITS}", MIN_BITS - 1);
        let over = format!("{} bits, over {MAX_BITS}", MAX_BITS + 1);
        let exponent = format!("from {MIN_EXPONENT} to {MAX_EXPONENT}");
        let cases = [
            (odd_of_bits(MIN_BITS - 1), e.clone(), Some(under)),
            (odd_of_bits(MAX_BITS + 1), e.clone(), Some(over)),
            (n.clone(), be(MIN_EXPONENT - 2), Some(exponent.clone())),
            (n.clone(), be(MAX_EXPONENT + 2), Some(exponent.clone())),
            (n.clone(), be(MIN_EXPONENT + 1), Some(exponent)),
            (n.clone(), be(MIN_EXPONENT), None),
            (n.clone(), be(MAX_EXPONENT), None),
        ];
        for (n, e, refusal) in cases {
            let mut k = good.clone();
            k["n"] = json!(URL_SAFE_NO_PAD.encode(&n));
            k["e"] = json!(URL_SAFE_NO_PAD.encode(&e));
            let (keys, warnings) = parse_keys(&jwks(vec![k, jwk("rsa-b.pem", "b")]), ALL).unwrap();
            // The verifier takes exactly the keys the parser takes.
            assert_eq!(RsaPublicKey::new(&n, &e).is_some(), refusal.is_none());
            match refusal {
                Some(why) => {
                    assert_eq!(keys.len(), 1, "{why}");
                    assert!(warnings[0].contains(&why), "{why}: {warnings:?}");
                }
                None => assert_eq!((keys.len(), warnings.len()), (2, 0), "{warnings:?}"),
            }
        }
    }

    #[test]
    fn an_ec_point_off_the_curve_or_out_of_range_is_skipped_at_load() {
        // ring would refuse every signature with such a key; the parser
        // refuses the key once, with a reason, as for RSA.
        let good = jwk("ec-p256.pem", "ec");
        let y = decode_b64url_strict(good["y"].as_str().unwrap()).unwrap();
        let mut off = y.clone();
        off[31] ^= 1;
        let mut p = vec![0xffu8; 32];
        p[4..8].copy_from_slice(&[0, 0, 0, 1]);
        p[8..20].fill(0);
        for bad_y in [off, p, vec![0xff; 32]] {
            let mut k = good.clone();
            k["y"] = json!(URL_SAFE_NO_PAD.encode(&bad_y));
            let (keys, warnings) = parse_keys(&jwks(vec![k, jwk("rsa-b.pem", "b")]), ALL).unwrap();
            assert_eq!(keys.len(), 1);
            assert!(warnings[0].contains("not on the curve"), "{warnings:?}");
        }
        let (keys, warnings) = parse_keys(&jwks(vec![good]), ALL).unwrap();
        assert_eq!((keys.len(), warnings.len()), (1, 0));
    }

    #[test]
    fn an_even_modulus_is_skipped_at_load() {
        // Not an RSA modulus; the fast verifier's Montgomery arithmetic
        // needs it odd, so the key is refused once, with a warning.
        let mut k = jwk("rsa-a.pem", "even");
        let mut n = decode_b64url_strict(k["n"].as_str().unwrap()).unwrap();
        *n.last_mut().unwrap() &= 0xfe;
        k["n"] = json!(URL_SAFE_NO_PAD.encode(&n));
        let (keys, warnings) = parse_keys(&jwks(vec![k, jwk("rsa-b.pem", "b")]), ALL).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("rsa modulus is even"), "{warnings:?}");
    }

    #[test]
    fn kid_selects_exactly_that_key_and_only_for_its_family_and_declared_alg() {
        let mut a = jwk("rsa-a.pem", "a");
        a["alg"] = json!("RS256");
        let doc = jwks(vec![a, jwk("rsa-b.pem", "b"), jwk("ec-p256.pem", "ec")]);
        let (set, _) = KeySet::parse(&doc, ALL).unwrap();
        let kids = |alg, kid| -> Vec<&str> {
            set.candidates(alg, kid)
                .iter()
                .map(|k| k.kid.as_deref().unwrap())
                .collect()
        };
        assert_eq!(kids(Alg::RS256, Some("a")), vec!["a"]);
        assert!(kids(Alg::PS256, Some("a")).is_empty(), "a declared RS256");
        assert_eq!(kids(Alg::PS256, Some("b")), vec!["b"]);
        assert!(kids(Alg::ES256, Some("a")).is_empty(), "wrong family");
        assert!(kids(Alg::RS256, Some("missing")).is_empty());
        assert!(kids(Alg::HS256, Some("a")).is_empty());
    }

    #[test]
    fn a_token_kid_falls_back_to_keys_published_without_kid_as_envoy_does() {
        let mut anonymous = jwk("rsa-b.pem", "x");
        anonymous.as_object_mut().unwrap().remove("kid");
        let doc = jwks(vec![
            jwk("rsa-a.pem", "a"),
            anonymous,
            jwk("ec-p256.pem", "ec"),
        ]);
        let (set, _) = KeySet::parse(&doc, ALL).unwrap();
        let kids = |kid| -> Vec<Option<String>> {
            set.candidates(Alg::RS256, kid)
                .iter()
                .map(|k| k.kid.clone())
                .collect()
        };
        // An exact kid wins; an unknown kid is tried only on kid-less keys.
        assert_eq!(kids(Some("a")), vec![Some("a".to_owned())]);
        assert_eq!(kids(Some("rotated-away")), vec![None]);
        assert!(set.candidates(Alg::ES256, Some("rotated-away")).is_empty());
    }

    #[test]
    fn without_kid_every_key_of_the_right_family_is_a_candidate() {
        let doc = jwks(vec![
            jwk("rsa-a.pem", "a"),
            jwk("ec-p256.pem", "ec"),
            jwk("rsa-b.pem", "b"),
        ]);
        let (set, _) = KeySet::parse(&doc, ALL).unwrap();
        let rsa: Vec<_> = set
            .candidates(Alg::RS512, None)
            .iter()
            .map(|k| k.kid.clone())
            .collect();
        assert_eq!(rsa, vec![Some("a".into()), Some("b".into())]);
        assert_eq!(set.candidates(Alg::ES256, None).len(), 1);
        assert!(set.candidates(Alg::EdDSA, None).is_empty());
        assert!(set.candidates(Alg::HS512, None).is_empty());
    }

    #[test]
    fn the_fingerprint_of_a_key_of_the_set_is_the_one_computed_at_parse() {
        let (set, _) = KeySet::parse(
            &jwks(vec![jwk("rsa-a.pem", "a"), jwk("rsa-b.pem", "b")]),
            ALL,
        )
        .unwrap();
        for key in set.keys() {
            assert_eq!(set.fingerprint_of(key), key.fingerprint());
        }
        // A key equal to one of the set but not its own is hashed, same print.
        let copy = set.keys()[1].clone();
        assert_eq!(set.fingerprint_of(&copy), copy.fingerprint());
        let (other, _) = KeySet::parse(&jwks(vec![jwk("ed25519.pem", "e")]), ALL).unwrap();
        assert_eq!(
            set.fingerprint_of(&other.keys()[0]),
            other.keys()[0].fingerprint()
        );
    }

    #[test]
    fn fingerprint_ignores_key_order_but_sees_any_key_change() {
        let a = jwk("rsa-a.pem", "a");
        let b = jwk("rsa-b.pem", "b");
        let (ab, _) = KeySet::parse(&jwks(vec![a.clone(), b.clone()]), ALL).unwrap();
        let (ba, _) = KeySet::parse(&jwks(vec![b.clone(), a.clone()]), ALL).unwrap();
        assert_eq!(ab.fingerprint(), ba.fingerprint());
        let mut renamed = b.clone();
        renamed["kid"] = json!("b2");
        let (ab2, _) = KeySet::parse(&jwks(vec![a.clone(), renamed]), ALL).unwrap();
        assert_ne!(ab.fingerprint(), ab2.fingerprint());
        let (only_a, _) = KeySet::parse(&jwks(vec![a]), ALL).unwrap();
        assert_ne!(ab.fingerprint(), only_a.fingerprint());
        assert_ne!(ab.keys()[0].fingerprint(), ab.keys()[1].fingerprint());
    }

    #[test]
    fn strict_base64url_refuses_every_character_outside_the_url_safe_alphabet_anywhere() {
        let url_safe = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        let others = ['\u{e9}', '\u{ff10}', '\u{2028}', '\u{feff}', '\u{1f600}'];
        let good = "AQABAQAB";
        assert!(decode_b64url_strict(good).is_some());
        for c in (0u8..128).map(char::from).chain(others) {
            for at in 0..good.len() {
                let mut s = good.to_owned();
                s.replace_range(at..=at, c.encode_utf8(&mut [0; 4]));
                if !url_safe(c) {
                    assert_eq!(decode_b64url_strict(&s), None, "{c:?} at {at}");
                }
                // Appended, inserted: the length then may or may not suit.
                let mut longer = good.to_owned();
                longer.insert(at, c);
                if !url_safe(c) {
                    assert_eq!(decode_b64url_strict(&longer), None, "{c:?} before {at}");
                }
            }
            let appended = format!("{good}{c}");
            if !url_safe(c) {
                assert_eq!(decode_b64url_strict(&appended), None, "{c:?} at the end");
            }
        }
    }

    #[test]
    fn strict_base64url_refuses_padding_standard_alphabet_whitespace_and_non_canonical() {
        assert_eq!(decode_b64url_strict("AQAB"), Some(vec![1, 0, 1]));
        for bad in ["AQAB=", "AQ==", "a+b/", "AQ AB", "AQAB\n", "AR", "A"] {
            assert_eq!(decode_b64url_strict(bad), None, "{bad:?}");
        }
    }
}
