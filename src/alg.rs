//! JWS algorithm names: the closed set mpass-guard understands.
//!
//! `none` is deliberately not representable: a token that names it can never
//! reach a signature check, because no `Alg` value exists for it.

use std::fmt;

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
    fn none_in_any_case_is_not_an_algorithm() {
        for name in ["none", "None", "NONE", "", "rs256", "HS256 "] {
            assert_eq!(Alg::from_name(name), None, "{name:?}");
        }
    }
}
