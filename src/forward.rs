//! Sanitising identity headers: which client-supplied headers must never
//! reach an upstream.
//!
//! A header is an identity header when its normalised name (ASCII lowercase,
//! `_` read as `-`, because several upstream stacks treat them alike, see
//! oauth2-proxy CVE-2025-64484) starts with the filter's owned prefix, equals
//! a header any provider's contract can emit, or matches the operator's
//! `strip_headers` list (exact names, or prefixes written as `name-*`), or
//! is in the built-in [`BUILT_IN_STRIP`] list of the identity header
//! families that apps behind other gateways trust (always on: operators add
//! to it, never remove from it). Sanitising runs on every path, before any
//! other decision.

use std::collections::HashSet;

use crate::error::{index, join, ConfigError};
use crate::http::is_token;

/// Identity headers other gateways and auth proxies set (oauth2-proxy,
/// Pomerium, Google IAP, Azure App Service, AWS ALB, mod_auth_openidc,
/// Apache `REMOTE_USER`): an app behind mpass-guard may trust any of them,
/// so a client never gets to send them. A trailing `*` makes a prefix.
/// Never `x-forwarded-for`, `-proto`, `-host`, `-port` or `x-request-id`.
pub const BUILT_IN_STRIP: &[&str] = &[
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-groups",
    "x-forwarded-preferred-username",
    "x-forwarded-access-token",
    "x-forwarded-id-token",
    "x-auth-request-*",
    "remote-user",
    "x-remote-user",
    "x-remote-group",
    "x-remote-groups",
    "x-remote-email",
    "x-userinfo",
    "x-id-token",
    "x-access-token",
    "x-user",
    "x-user-id",
    "x-email",
    "x-jwt-assertion",
    "x-jwt-payload",
    "x-pomerium-jwt-assertion",
    "x-pomerium-claim-*",
    "x-goog-authenticated-user-*",
    "x-ms-client-principal*",
    "oidc_claim_*",
    "oidc_access_token",
    "x-amzn-oidc-*",
];

/// The compiled set of identity header names.
#[derive(Debug, Clone, Default)]
pub struct Sanitiser {
    prefix: String,
    exact: HashSet<String, crate::routing::Tables>,
    prefixes: Vec<String>,
}

/// Lowercases ASCII and maps `_` to `-`; other characters are kept as they
/// are (per byte they would turn into different characters, and normalising
/// twice would not give the same name).
pub fn normalise(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    normalise_into(name, &mut out);
    out
}

/// [`normalise`] into a reused buffer (the request path sanitises every
/// header name; one buffer per request instead of one string per header).
fn normalise_into(name: &str, out: &mut String) {
    out.clear();
    out.extend(name.chars().map(|c| match c {
        '_' => '-',
        c => c.to_ascii_lowercase(),
    }));
}

impl Sanitiser {
    /// Compiles the owned prefix and the operator's list; `path` is where
    /// `strip_headers` sits in the configuration.
    pub fn compile(
        prefix: &str,
        strip_headers: &[String],
        path: &str,
    ) -> Result<Self, ConfigError> {
        let mut out = Sanitiser {
            prefix: normalise(prefix),
            ..Sanitiser::default()
        };
        for entry in BUILT_IN_STRIP {
            match entry.strip_suffix('*') {
                Some(stem) => out.prefixes.push(normalise(stem)),
                None => {
                    out.exact.insert(normalise(entry));
                }
            }
        }
        for (i, entry) in strip_headers.iter().enumerate() {
            let p = index(&join(path, "strip_headers"), i);
            let (name, wildcard) = match entry.strip_suffix('*') {
                Some(stem) => (stem, true),
                None => (entry.as_str(), false),
            };
            if !is_token(name) || name.contains('*') {
                return Err(ConfigError::new(
                    p,
                    "not a header name (a trailing * makes a prefix)",
                ));
            }
            if wildcard {
                out.prefixes.push(normalise(name));
            } else {
                out.exact.insert(normalise(name));
            }
        }
        Ok(out)
    }

    /// Adds a header a contract can emit.
    pub fn add_emitted(&mut self, name: &str) {
        self.exact.insert(normalise(name));
    }

    /// True when a client must not be able to send this header upstream.
    pub fn is_identity_header(&self, name: &str) -> bool {
        self.matches(&normalise(name))
    }

    fn matches(&self, norm: &str) -> bool {
        (!self.prefix.is_empty() && norm.starts_with(&self.prefix))
            || self.exact.contains(norm)
            || self.prefixes.iter().any(|p| norm.starts_with(p.as_str()))
    }

    /// The names (as the client sent them) of every identity header in the
    /// request, each once.
    pub fn spoofed(&self, headers: &[(String, String)]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut norm = String::with_capacity(64);
        for (name, _) in headers {
            if name.starts_with(':') {
                continue;
            }
            // Envoy hands names lowercase: most need no copy to normalise.
            let spoofed = if name.bytes().any(|b| b.is_ascii_uppercase() || b == b'_') {
                normalise_into(name, &mut norm);
                self.matches(&norm)
            } else {
                self.matches(name)
            };
            if spoofed && !out.contains(name) {
                out.push(name.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_strip_list_is_always_on_and_spares_the_forwarding_headers() {
        let s = Sanitiser::compile("x-mpass-", &[], "").unwrap();
        for name in [
            "X-Forwarded-Email",
            "x_forwarded_groups",
            "x-auth-request-user",
            "Remote-User",
            "x-pomerium-claim-email",
            "x-goog-authenticated-user-email",
            "x-ms-client-principal-name",
            "OIDC_CLAIM_email",
            "x-amzn-oidc-identity",
            "x-access-token",
        ] {
            assert!(s.is_identity_header(name), "{name}");
        }
        for name in [
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-forwarded-host",
            "x-forwarded-port",
            "x-request-id",
            "authorization",
        ] {
            assert!(!s.is_identity_header(name), "{name}");
        }
    }

    fn s() -> Sanitiser {
        let mut s = Sanitiser::compile(
            "x-mpass-",
            &["x-forwarded-user".into(), "x-auth-request-*".into()],
            "",
        )
        .unwrap();
        s.add_emitted("x-shop-email");
        s
    }

    #[test]
    fn owned_prefix_is_stripped_in_every_case_and_underscore_variant() {
        for name in [
            "x-mpass-uid",
            "X-MPASS-UID",
            "X_Mpass_Uid",
            "x_mpass-uid",
            "x-mpass-",
        ] {
            assert!(s().is_identity_header(name), "{name}");
        }
    }

    #[test]
    fn operator_names_and_prefixes_and_contract_headers_are_stripped() {
        for name in [
            "x-forwarded-user",
            "X_Forwarded_User",
            "x-auth-request-email",
            "X_AUTH_REQUEST_USER",
            "x-shop-email",
            "X_Shop_Email",
        ] {
            assert!(s().is_identity_header(name), "{name}");
        }
    }

    #[test]
    fn ordinary_headers_are_kept() {
        for name in [
            "accept",
            "x-mpas-uid",
            "authorization",
            "cookie",
            "x-forwarded-for",
        ] {
            assert!(!s().is_identity_header(name), "{name}");
        }
    }

    #[test]
    fn normalising_is_idempotent_and_keeps_non_ascii_characters() {
        // Found by fuzzing: bytes were read as Latin-1, so `Ö` became `Ã\u{96}`.
        assert_eq!(normalise("X_Öhman"), "x-Öhman");
        assert_eq!(normalise(&normalise("X_Öhman")), normalise("X_Öhman"));
    }

    #[test]
    fn a_bad_strip_entry_is_a_configuration_error_with_its_path() {
        let err = Sanitiser::compile("x-mpass-", &["ok".into(), "a*b".into()], "").unwrap_err();
        assert_eq!(err.path, "strip_headers[1]");
    }
}
