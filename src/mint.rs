//! Token minting for the CLI, tests and the demo: loading PKCS#8 PEM signing
//! keys, signing compact JWS with any supported algorithm, and publishing the
//! matching public JWK.
//!
//! Native only (it needs `SystemRandom`); the filter itself never signs. The
//! raw entry point [`sign_raw`] signs arbitrary header and payload bytes on
//! purpose, so attack tests can build tokens a well-behaved issuer never would.

use std::fmt;
use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use serde_json::{json, Value};

use crate::alg::{Alg, KeyFamily};

/// A key that can sign tokens.
pub enum SigningKey {
    /// An RSA private key (at least 2048 bits; ring refuses smaller).
    Rsa(RsaKeyPair),
    /// A P-256 private key.
    EcP256(EcdsaKeyPair),
    /// An Ed25519 private key.
    Ed25519(Ed25519KeyPair),
    /// An HMAC secret.
    Hmac(Vec<u8>),
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print private key material.
        f.write_str(match self {
            SigningKey::Rsa(_) => "SigningKey::Rsa",
            SigningKey::EcP256(_) => "SigningKey::EcP256",
            SigningKey::Ed25519(_) => "SigningKey::Ed25519",
            SigningKey::Hmac(_) => "SigningKey::Hmac",
        })
    }
}

impl SigningKey {
    /// An HMAC signing key from a secret.
    pub fn hmac(secret: impl Into<Vec<u8>>) -> SigningKey {
        SigningKey::Hmac(secret.into())
    }

    /// The key family.
    pub fn family(&self) -> KeyFamily {
        match self {
            SigningKey::Rsa(_) => KeyFamily::Rsa,
            SigningKey::EcP256(_) => KeyFamily::EcP256,
            SigningKey::Ed25519(_) => KeyFamily::Ed25519,
            SigningKey::Hmac(_) => KeyFamily::Hmac,
        }
    }

    /// Parses a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`) holding an RSA,
    /// P-256 or Ed25519 private key.
    pub fn from_pem(pem: &str) -> Result<SigningKey, MintError> {
        let der = pem_to_der(pem)?;
        if let Ok(k) = RsaKeyPair::from_pkcs8(&der) {
            return Ok(SigningKey::Rsa(k));
        }
        let rng = SystemRandom::new();
        if let Ok(k) =
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng)
        {
            return Ok(SigningKey::EcP256(k));
        }
        // OpenSSL writes Ed25519 keys as PKCS#8 v1 (no embedded public key),
        // which only the "maybe unchecked" loader accepts.
        if let Ok(k) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der) {
            return Ok(SigningKey::Ed25519(k));
        }
        Err(MintError::UnsupportedKey)
    }
}

/// Why minting failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MintError {
    /// The key file could not be read.
    Io(String),
    /// The file is not a PKCS#8 `PRIVATE KEY` PEM.
    NotPem,
    /// The PEM holds a key type or size ring does not sign with.
    UnsupportedKey,
    /// The algorithm needs another kind of key.
    KeyMismatch,
    /// The header is not a JSON object.
    HeaderNotObject,
    /// The key has no public form (an HMAC secret).
    NoPublicKey,
    /// ring failed to sign.
    Signing,
}

impl fmt::Display for MintError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MintError::Io(e) => write!(f, "cannot read key file: {e}"),
            MintError::NotPem => f.write_str("not a pkcs#8 private key pem"),
            MintError::UnsupportedKey => f.write_str("unsupported private key type or size"),
            MintError::KeyMismatch => f.write_str("algorithm does not fit the signing key"),
            MintError::HeaderNotObject => f.write_str("header is not a json object"),
            MintError::NoPublicKey => f.write_str("an hmac secret has no public jwk"),
            MintError::Signing => f.write_str("signing failed"),
        }
    }
}

impl std::error::Error for MintError {}

/// Loads a PKCS#8 PEM signing key from a file.
pub fn load_pem(path: impl AsRef<Path>) -> Result<SigningKey, MintError> {
    let text = std::fs::read_to_string(path).map_err(|e| MintError::Io(e.to_string()))?;
    SigningKey::from_pem(&text)
}

fn pem_to_der(pem: &str) -> Result<Vec<u8>, MintError> {
    crate::signing::pem_to_der(pem).ok_or(MintError::NotPem)
}

/// Signs `claims_json` as a compact JWS. `header` must be a JSON object; `alg`
/// is added if absent (an `alg` already there is kept, even a wrong one, so
/// tests can lie in the header).
pub fn sign_compact(
    alg: Alg,
    key: &SigningKey,
    header: &Value,
    claims_json: &[u8],
) -> Result<String, MintError> {
    let mut header = header
        .as_object()
        .ok_or(MintError::HeaderNotObject)?
        .clone();
    header
        .entry("alg")
        .or_insert_with(|| Value::String(alg.name().to_owned()));
    let header_bytes = serde_json::to_vec(&header).map_err(|_| MintError::HeaderNotObject)?;
    sign_raw(alg, key, &header_bytes, claims_json)
}

/// Signs arbitrary header and payload bytes with `alg`:
/// `b64(header).b64(payload).b64(signature)`. Nothing is checked about the
/// bytes: this is the attack-test entry point.
pub fn sign_raw(
    alg: Alg,
    key: &SigningKey,
    header_bytes: &[u8],
    payload_bytes: &[u8],
) -> Result<String, MintError> {
    let mut out = URL_SAFE_NO_PAD.encode(header_bytes);
    out.push('.');
    out.push_str(&URL_SAFE_NO_PAD.encode(payload_bytes));
    let sig = sign_bytes(alg, key, out.as_bytes())?;
    out.push('.');
    out.push_str(&URL_SAFE_NO_PAD.encode(sig));
    Ok(out)
}

/// Signs a message (a JWS signing input) with `alg`.
pub fn sign_bytes(alg: Alg, key: &SigningKey, message: &[u8]) -> Result<Vec<u8>, MintError> {
    let rng = SystemRandom::new();
    match (alg, key) {
        (
            Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512,
            SigningKey::Rsa(k),
        ) => {
            let padding: &'static dyn signature::RsaEncoding = match alg {
                Alg::RS256 => &signature::RSA_PKCS1_SHA256,
                Alg::RS384 => &signature::RSA_PKCS1_SHA384,
                Alg::RS512 => &signature::RSA_PKCS1_SHA512,
                Alg::PS256 => &signature::RSA_PSS_SHA256,
                Alg::PS384 => &signature::RSA_PSS_SHA384,
                _ => &signature::RSA_PSS_SHA512,
            };
            let mut sig = vec![0u8; k.public().modulus_len()];
            k.sign(padding, &rng, message, &mut sig)
                .map_err(|_| MintError::Signing)?;
            Ok(sig)
        }
        (Alg::ES256, SigningKey::EcP256(k)) => k
            .sign(&rng, message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| MintError::Signing),
        (Alg::EdDSA, SigningKey::Ed25519(k)) => Ok(k.sign(message).as_ref().to_vec()),
        (Alg::HS256 | Alg::HS384 | Alg::HS512, SigningKey::Hmac(secret)) => {
            let h = match alg {
                Alg::HS256 => ring::hmac::HMAC_SHA256,
                Alg::HS384 => ring::hmac::HMAC_SHA384,
                _ => ring::hmac::HMAC_SHA512,
            };
            let key = ring::hmac::Key::new(h, secret);
            Ok(ring::hmac::sign(&key, message).as_ref().to_vec())
        }
        _ => Err(MintError::KeyMismatch),
    }
}

/// The public JWK of a signing key (`use: sig`, plus `kid` and `alg` if given).
pub fn public_jwk(
    key: &SigningKey,
    kid: Option<&str>,
    alg: Option<Alg>,
) -> Result<Value, MintError> {
    let b64 = |b: &[u8]| Value::String(URL_SAFE_NO_PAD.encode(b));
    let jwk = match key {
        SigningKey::Rsa(k) => {
            let c = signature::RsaPublicKeyComponents::<Vec<u8>>::from(k.public());
            json!({ "kty": "RSA", "n": b64(&c.n), "e": b64(&c.e) })
        }
        SigningKey::EcP256(k) => {
            // Uncompressed point: 0x04 || x (32) || y (32).
            let p = k.public_key().as_ref();
            let x = p.get(1..33).ok_or(MintError::UnsupportedKey)?;
            let y = p.get(33..65).ok_or(MintError::UnsupportedKey)?;
            json!({ "kty": "EC", "crv": "P-256", "x": b64(x), "y": b64(y) })
        }
        SigningKey::Ed25519(k) => {
            json!({ "kty": "OKP", "crv": "Ed25519", "x": b64(k.public_key().as_ref()) })
        }
        SigningKey::Hmac(_) => return Err(MintError::NoPublicKey),
    };
    let Value::Object(mut jwk) = jwk else {
        return Err(MintError::UnsupportedKey);
    };
    jwk.insert("use".into(), json!("sig"));
    if let Some(kid) = kid {
        jwk.insert("kid".into(), json!(kid));
    }
    if let Some(alg) = alg {
        jwk.insert("alg".into(), json!(alg.name()));
    }
    Ok(Value::Object(jwk))
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

    fn key_path(name: &str) -> String {
        format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn every_committed_test_key_loads_as_its_own_kind() {
        let cases = [
            ("rsa-a.pem", KeyFamily::Rsa),
            ("rsa-b.pem", KeyFamily::Rsa),
            ("ec-p256.pem", KeyFamily::EcP256),
            ("ed25519.pem", KeyFamily::Ed25519),
        ];
        for (file, family) in cases {
            assert_eq!(load_pem(key_path(file)).unwrap().family(), family, "{file}");
        }
    }

    #[test]
    fn a_1024_bit_rsa_key_cannot_be_loaded_for_signing() {
        assert_eq!(
            load_pem(key_path("rsa-1024.pem")).unwrap_err(),
            MintError::UnsupportedKey
        );
    }

    #[test]
    fn text_that_is_not_a_pkcs8_pem_is_refused() {
        assert_eq!(
            SigningKey::from_pem("hello").unwrap_err(),
            MintError::NotPem
        );
    }

    #[test]
    fn signing_with_a_key_of_the_wrong_kind_is_refused() {
        let ec = load_pem(key_path("ec-p256.pem")).unwrap();
        assert_eq!(
            sign_raw(Alg::RS256, &ec, b"{}", b"{}").unwrap_err(),
            MintError::KeyMismatch
        );
        let secret = SigningKey::hmac(b"s".to_vec());
        assert_eq!(
            public_jwk(&secret, None, None).unwrap_err(),
            MintError::NoPublicKey
        );
    }
}
