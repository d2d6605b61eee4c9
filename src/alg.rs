//! JWS algorithm names: the closed set mpass-guard understands.
//!
//! `none` is deliberately not representable: a token that names it can never
//! reach a signature check, because no `Alg` value exists for it.

use std::fmt;

use crate::rsa_fast::{Hash, Padding};

/// A JWS `alg` value that mpass-guard can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Alg {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    EdDSA,
    HS256,
    HS384,
    HS512,
}

/// The family of key an algorithm needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    /// `kty: RSA`, at least 2048 bits.
    Rsa,
    /// `kty: EC`, `crv: P-256`.
    EcP256,
    /// `kty: OKP`, `crv: Ed25519`.
    Ed25519,
    /// A provider's client secret; never taken from a JWKS.
    Hmac,
}

impl Alg {
    /// Every supported algorithm, in a stable order.
    pub const ALL: [Alg; 11] = [
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::EdDSA,
        Alg::HS256,
        Alg::HS384,
        Alg::HS512,
    ];

    /// Parses an `alg` header value. Matching is exact and case-sensitive
    /// (RFC 7515): `none`, `None` and `rs256` are all unknown.
    pub fn from_name(name: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The JWS name of the algorithm.
    pub fn name(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::EdDSA => "EdDSA",
            Alg::HS256 => "HS256",
            Alg::HS384 => "HS384",
            Alg::HS512 => "HS512",
        }
    }

    /// The key family this algorithm verifies with.
    pub fn family(self) -> KeyFamily {
        match self {
            Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512 => {
                KeyFamily::Rsa
            }
            Alg::ES256 => KeyFamily::EcP256,
            Alg::EdDSA => KeyFamily::Ed25519,
            Alg::HS256 | Alg::HS384 | Alg::HS512 => KeyFamily::Hmac,
        }
    }

    /// The RSA signature scheme (padding and hash) of an RS*/PS* algorithm,
    /// `None` for every other family. The one table of it: verification and
    /// minting both read it here.
    pub fn rsa_scheme(self) -> Option<(Padding, Hash)> {
        match self {
            Alg::RS256 => Some((Padding::Pkcs1v15, Hash::Sha256)),
            Alg::RS384 => Some((Padding::Pkcs1v15, Hash::Sha384)),
            Alg::RS512 => Some((Padding::Pkcs1v15, Hash::Sha512)),
            Alg::PS256 => Some((Padding::Pss, Hash::Sha256)),
            Alg::PS384 => Some((Padding::Pss, Hash::Sha384)),
            Alg::PS512 => Some((Padding::Pss, Hash::Sha512)),
            Alg::ES256 | Alg::EdDSA | Alg::HS256 | Alg::HS384 | Alg::HS512 => None,
        }
    }

    /// True for the HMAC algorithms, which are verified only with a provider's secret.
    pub fn is_hmac(self) -> bool {
        self.family() == KeyFamily::Hmac
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_round_trips_through_its_name() {
        for alg in Alg::ALL {
            assert_eq!(Alg::from_name(alg.name()), Some(alg));
        }
    }

    #[test]
    fn exactly_the_rsa_family_has_an_rsa_scheme_and_each_its_own() {
        let schemes: Vec<_> = Alg::ALL.into_iter().filter_map(Alg::rsa_scheme).collect();
        for alg in Alg::ALL {
            assert_eq!(
                alg.rsa_scheme().is_some(),
                alg.family() == KeyFamily::Rsa,
                "{alg}"
            );
        }
        let unique: std::collections::HashSet<_> =
            schemes.iter().map(|s| format!("{s:?}")).collect();
        assert_eq!((schemes.len(), unique.len()), (6, 6));
        assert_eq!(Alg::PS384.rsa_scheme(), Some((Padding::Pss, Hash::Sha384)));
        assert_eq!(
            Alg::RS512.rsa_scheme(),
            Some((Padding::Pkcs1v15, Hash::Sha512))
        );
    }

    #[test]
    fn none_in_any_case_is_not_an_algorithm() {
        for name in ["none", "None", "NONE", "", "rs256", "HS256 "] {
            assert_eq!(Alg::from_name(name), None, "{name:?}");
        }
    }
}
