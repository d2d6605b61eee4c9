//! Token minting for the CLI, tests and the demo: reading PEM keys (PKCS#8,
//! PKCS#1, SEC1 private keys; SubjectPublicKeyInfo and PKCS#1 public keys),
//! signing compact JWS with any supported algorithm, and publishing the
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
use serde_json::{json, Map, Value};

use crate::alg::{Alg, KeyFamily};
use crate::rsa_fast::{Hash, Padding};

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

    /// Parses a private key PEM: PKCS#8 (`BEGIN PRIVATE KEY`: RSA, P-256
    /// or Ed25519), PKCS#1 (`BEGIN RSA PRIVATE KEY`) or SEC1 (`BEGIN EC
    /// PRIVATE KEY`, P-256). A public key is refused: it cannot sign.
    pub fn from_pem(pem: &str) -> Result<SigningKey, MintError> {
        match read_pem(pem)? {
            KeyFile::Private(key) => Ok(key),
            KeyFile::Public(_) => Err(MintError::PublicKeyCannotSign),
        }
    }

    /// The public half (an HMAC secret has none).
    pub fn public_key(&self) -> Result<PublicKey, MintError> {
        Ok(match self {
            SigningKey::Rsa(k) => {
                let c = signature::RsaPublicKeyComponents::<Vec<u8>>::from(k.public());
                PublicKey::Rsa { n: c.n, e: c.e }
            }
            SigningKey::EcP256(k) => PublicKey::from_p256_point(k.public_key().as_ref())?,
            SigningKey::Ed25519(k) => PublicKey::Ed25519(k.public_key().as_ref().to_vec()),
            SigningKey::Hmac(_) => return Err(MintError::NoPublicKey),
        })
    }
}

fn pkcs8_private(der: &[u8]) -> Result<SigningKey, MintError> {
    if let Ok(k) = RsaKeyPair::from_pkcs8(der) {
        return Ok(SigningKey::Rsa(k));
    }
    let rng = SystemRandom::new();
    if let Ok(k) = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
    {
        return Ok(SigningKey::EcP256(k));
    }
    // OpenSSL writes Ed25519 keys as PKCS#8 v1 (no embedded public key),
    // which only the "maybe unchecked" loader accepts.
    if let Ok(k) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
        return Ok(SigningKey::Ed25519(k));
    }
    Err(MintError::UnsupportedKey)
}

/// SEC1 `ECPrivateKey` (RFC 5915), P-256 only, with its public point (OpenSSL
/// always writes it).
fn sec1_private(der: &[u8]) -> Result<SigningKey, MintError> {
    let key = sec1::EcPrivateKey::try_from(der).map_err(|_| MintError::NotPem)?;
    if let Some(curve) = key.parameters.and_then(|p| p.named_curve()) {
        if curve != P256_OID {
            return Err(MintError::UnsupportedKey);
        }
    }
    let public = key.public_key.ok_or(MintError::UnsupportedKey)?;
    EcdsaKeyPair::from_private_key_and_public_key(
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        key.private_key,
        public,
        &SystemRandom::new(),
    )
    .map(SigningKey::EcP256)
    .map_err(|_| MintError::UnsupportedKey)
}

const P256_OID: spki::ObjectIdentifier = spki::ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const RSA_OID: spki::ObjectIdentifier = spki::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const EC_OID: spki::ObjectIdentifier = spki::ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const ED25519_OID: spki::ObjectIdentifier = spki::ObjectIdentifier::new_unwrap("1.3.101.112");

/// A public key, for `jwks`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// Modulus and exponent, big-endian without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// The P-256 point's coordinates, 32 bytes each.
    EcP256 { x: Vec<u8>, y: Vec<u8> },
    /// The 32-byte Ed25519 public key.
    Ed25519(Vec<u8>),
}

impl PublicKey {
    /// The key family.
    pub fn family(&self) -> KeyFamily {
        match self {
            PublicKey::Rsa { .. } => KeyFamily::Rsa,
            PublicKey::EcP256 { .. } => KeyFamily::EcP256,
            PublicKey::Ed25519(_) => KeyFamily::Ed25519,
        }
    }

    /// From an uncompressed point: 0x04 || x (32) || y (32).
    fn from_p256_point(p: &[u8]) -> Result<PublicKey, MintError> {
        match (p.first(), p.get(1..33), p.get(33..65), p.len()) {
            (Some(4), Some(x), Some(y), 65) => Ok(PublicKey::EcP256 {
                x: x.to_vec(),
                y: y.to_vec(),
            }),
            _ => Err(MintError::UnsupportedKey),
        }
    }

    /// PKCS#1 `RSAPublicKey` DER.
    fn from_pkcs1(der: &[u8]) -> Result<PublicKey, MintError> {
        use pkcs1::der::Decode as _;
        let k = pkcs1::RsaPublicKey::from_der(der).map_err(|_| MintError::NotPem)?;
        Ok(PublicKey::Rsa {
            n: k.modulus.as_bytes().to_vec(),
            e: k.public_exponent.as_bytes().to_vec(),
        })
    }

    /// X.509 `SubjectPublicKeyInfo` DER (`BEGIN PUBLIC KEY`).
    fn from_spki(der: &[u8]) -> Result<PublicKey, MintError> {
        let info = spki::SubjectPublicKeyInfoRef::try_from(der).map_err(|_| MintError::NotPem)?;
        let bits = info.subject_public_key.raw_bytes();
        match info.algorithm.oid {
            RSA_OID => PublicKey::from_pkcs1(bits),
            EC_OID if info.algorithm.parameters_oid().ok() == Some(P256_OID) => {
                PublicKey::from_p256_point(bits)
            }
            ED25519_OID if bits.len() == 32 => Ok(PublicKey::Ed25519(bits.to_vec())),
            _ => Err(MintError::UnsupportedKey),
        }
    }

    /// The public JWK (`use: sig`, plus `kid` and `alg` if given).
    pub fn jwk(&self, kid: Option<&str>, alg: Option<Alg>) -> Value {
        let b64 = |b: &[u8]| Value::String(URL_SAFE_NO_PAD.encode(b));
        let mut jwk = Map::new();
        match self {
            PublicKey::Rsa { n, e } => {
                jwk.insert("kty".into(), json!("RSA"));
                jwk.insert("n".into(), b64(n));
                jwk.insert("e".into(), b64(e));
            }
            PublicKey::EcP256 { x, y } => {
                jwk.insert("kty".into(), json!("EC"));
                jwk.insert("crv".into(), json!("P-256"));
                jwk.insert("x".into(), b64(x));
                jwk.insert("y".into(), b64(y));
            }
            PublicKey::Ed25519(x) => {
                jwk.insert("kty".into(), json!("OKP"));
                jwk.insert("crv".into(), json!("Ed25519"));
                jwk.insert("x".into(), b64(x));
            }
        }
        jwk.insert("use".into(), json!("sig"));
        if let Some(kid) = kid {
            jwk.insert("kid".into(), json!(kid));
        }
        if let Some(alg) = alg {
            jwk.insert("alg".into(), json!(alg.name()));
        }
        Value::Object(jwk)
    }
}

/// What a key file holds.
#[derive(Debug)]
pub enum KeyFile {
    Private(SigningKey),
    Public(PublicKey),
}

impl KeyFile {
    /// The public key (of a private key, its public half).
    pub fn public_key(&self) -> Result<PublicKey, MintError> {
        match self {
            KeyFile::Private(k) => k.public_key(),
            KeyFile::Public(p) => Ok(p.clone()),
        }
    }
}

/// Reads the first key block of a PEM text: the private key forms of
/// [`SigningKey::from_pem`] and the public keys `BEGIN PUBLIC KEY` (X.509
/// SubjectPublicKeyInfo) and `BEGIN RSA PUBLIC KEY` (PKCS#1). Other blocks
/// get an error that says how to convert them.
pub fn read_pem(text: &str) -> Result<KeyFile, MintError> {
    let blocks = pem::parse_many(text).map_err(|_| MintError::NotPem)?;
    // `openssl ecparam -genkey` writes an `EC PARAMETERS` block first.
    let block = blocks
        .iter()
        .find(|b| b.tag() != "EC PARAMETERS")
        .ok_or(MintError::NotPem)?;
    if block
        .headers()
        .get("Proc-Type")
        .is_some_and(|v| v.contains("ENCRYPTED"))
    {
        return Err(MintError::Convert(block.tag().to_owned()));
    }
    let der = block.contents();
    match block.tag() {
        "PRIVATE KEY" => pkcs8_private(der).map(KeyFile::Private),
        "RSA PRIVATE KEY" => RsaKeyPair::from_der(der)
            .map(|k| KeyFile::Private(SigningKey::Rsa(k)))
            .map_err(|_| MintError::UnsupportedKey),
        "EC PRIVATE KEY" => sec1_private(der).map(KeyFile::Private),
        "PUBLIC KEY" => PublicKey::from_spki(der).map(KeyFile::Public),
        "RSA PUBLIC KEY" => PublicKey::from_pkcs1(der).map(KeyFile::Public),
        "CERTIFICATE" => Err(MintError::Certificate),
        other => Err(MintError::Convert(other.to_owned())),
    }
}

/// Reads a key file (see [`read_pem`]).
pub fn read_key_file(path: impl AsRef<Path>) -> Result<KeyFile, MintError> {
    let text = std::fs::read_to_string(path).map_err(|e| MintError::Io(e.to_string()))?;
    read_pem(&text)
}

/// Why minting failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MintError {
    /// The key file could not be read.
    Io(String),
    /// The file holds no PEM key block (or a damaged one).
    NotPem,
    /// A PEM block of a kind that is not read (its label): convert it.
    Convert(String),
    /// A certificate where a key was expected.
    Certificate,
    /// A public key where a private key is needed.
    PublicKeyCannotSign,
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
            MintError::NotPem => f.write_str(
                "no readable pem key (expected BEGIN PRIVATE KEY, RSA PRIVATE KEY, EC PRIVATE KEY, PUBLIC KEY or RSA PUBLIC KEY)",
            ),
            MintError::Convert(label) => write!(
                f,
                "a {label:?} pem is not read; convert it to unencrypted PKCS#8 with: {CONVERT}"
            ),
            MintError::Certificate => f.write_str(
                "a certificate, not a key; take its public key with: openssl x509 -in CERT.pem -pubkey -noout -out public.pem",
            ),
            MintError::PublicKeyCannotSign => f.write_str(
                "a public key cannot sign: give the private key (BEGIN PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)",
            ),
            MintError::UnsupportedKey => f.write_str(
                "unsupported key type or size: RSA of at least 2048 bits, EC P-256 or Ed25519",
            ),
            MintError::KeyMismatch => f.write_str("algorithm does not fit the signing key"),
            MintError::HeaderNotObject => f.write_str("header is not a json object"),
            MintError::NoPublicKey => f.write_str("an hmac secret has no public jwk"),
            MintError::Signing => f.write_str("signing failed"),
        }
    }
}

impl std::error::Error for MintError {}

/// The command that turns any private key OpenSSL reads (encrypted, traditional
/// or OpenSSH-converted) into the PKCS#8 PEM read here.
pub const CONVERT: &str = "openssl pkcs8 -topk8 -nocrypt -in KEY.pem -out key-pkcs8.pem";

/// Loads a private key PEM from a file (see [`SigningKey::from_pem`]).
pub fn load_pem(path: impl AsRef<Path>) -> Result<SigningKey, MintError> {
    let text = std::fs::read_to_string(path).map_err(|e| MintError::Io(e.to_string()))?;
    SigningKey::from_pem(&text)
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
            // ring's name for the scheme `Alg::rsa_scheme` gives.
            let padding: &'static dyn signature::RsaEncoding = match alg.rsa_scheme() {
                Some((Padding::Pkcs1v15, Hash::Sha256)) => &signature::RSA_PKCS1_SHA256,
                Some((Padding::Pkcs1v15, Hash::Sha384)) => &signature::RSA_PKCS1_SHA384,
                Some((Padding::Pkcs1v15, Hash::Sha512)) => &signature::RSA_PKCS1_SHA512,
                Some((Padding::Pss, Hash::Sha256)) => &signature::RSA_PSS_SHA256,
                Some((Padding::Pss, Hash::Sha384)) => &signature::RSA_PSS_SHA384,
                Some((Padding::Pss, Hash::Sha512)) => &signature::RSA_PSS_SHA512,
                None => return Err(MintError::KeyMismatch),
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
    Ok(key.public_key()?.jwk(kid, alg))
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
