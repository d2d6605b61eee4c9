//! Why a request is refused, typed, with its HTTP status, its stable reason
//! (the audit record's `reason` and the `denied` counter's last part) and the
//! local reply the client receives.

use super::decision::Response;
use crate::userinfo::Failure;

/// A refusal, before it is rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No token where the provider's locations look.
    Missing,
    /// The token is malformed, unverifiable or not valid now (reason from
    /// `TokenError::reason`, or `ambiguous_token`).
    Token(&'static str),
    /// The token's audience is not the provider's.
    Forbidden(&'static str),
    /// The provider's contract refuses the token's claims.
    Contract(&'static str),
    /// The issuer's keys cannot be had: not the user's fault, 503.
    KeysUnavailable,
    /// The registry (management service) has no snapshot, or its last good
    /// one is older than `max_stale`: not the user's fault, 503, and never
    /// a release without the controllers' permissions.
    RegistryUnavailable,
    /// The path matches providers ambiguously.
    AmbiguousPath,
    /// The gateway token (`contract.signed_token`) could not be signed:
    /// refused, never forwarded without the token the contract promises.
    Signing,
    /// The userinfo call failed: unavailable (503), refused (401), invalid (502).
    Userinfo(crate::userinfo::Failure),
}

impl Refusal {
    /// The HTTP status of the local reply.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Missing | Refusal::Token(_) => 401,
            Refusal::Forbidden(_) | Refusal::Contract(_) => 403,
            Refusal::KeysUnavailable | Refusal::RegistryUnavailable => 503,
            Refusal::AmbiguousPath => 400,
            Refusal::Signing => 500,
            Refusal::Userinfo(f) => match f {
                Failure::Unavailable => 503,
                Failure::Refused => 401,
                // The OP's answer is unusable: a bad gateway, not the user.
                Failure::Invalid => 502,
            },
        }
    }

    /// The stable reason: audit records and counter names use it.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Missing => "missing_token",
            Refusal::KeysUnavailable => "keys_unavailable",
            Refusal::RegistryUnavailable => "registry_unavailable",
            Refusal::AmbiguousPath => "ambiguous_path",
            Refusal::Signing => "signing_failed",
            Refusal::Userinfo(f) => f.reason(),
            Refusal::Token(r) | Refusal::Forbidden(r) | Refusal::Contract(r) => r,
        }
    }

    /// The local reply; `realm` names the protection space in the
    /// `WWW-Authenticate` challenge of a 401.
    pub fn render(&self, realm: &str) -> Response {
        let (challenge, body) = match self {
            Refusal::KeysUnavailable => (
                None,
                r#"{"error":"temporarily_unavailable","reason":"keys_unavailable"}"#.to_owned(),
            ),
            Refusal::RegistryUnavailable => (
                None,
                r#"{"error":"temporarily_unavailable","reason":"registry_unavailable"}"#
                    .to_owned(),
            ),
            Refusal::Missing => (
                Some(format!("Bearer realm=\"{realm}\"")),
                r#"{"error":"missing_token"}"#.to_owned(),
            ),
            Refusal::Token(reason) => (
                Some(format!(
                    "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{reason}\""
                )),
                format!(r#"{{"error":"invalid_token","reason":"{reason}"}}"#),
            ),
            Refusal::Forbidden(reason) => (
                None,
                format!(r#"{{"error":"forbidden","reason":"{reason}"}}"#),
            ),
            Refusal::Contract(reason) => (
                None,
                format!(r#"{{"error":"contract_violation","reason":"{reason}"}}"#),
            ),
            Refusal::AmbiguousPath => (
                None,
                r#"{"error":"invalid_request","reason":"ambiguous_path"}"#.to_owned(),
            ),
            Refusal::Signing => (
                None,
                r#"{"error":"server_error","reason":"signing_failed"}"#.to_owned(),
            ),
            Refusal::Userinfo(Failure::Unavailable) => (
                None,
                r#"{"error":"temporarily_unavailable","reason":"userinfo_unavailable"}"#.to_owned(),
            ),
            Refusal::Userinfo(Failure::Refused) => (
                Some(format!(
                    "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"userinfo_refused\""
                )),
                r#"{"error":"invalid_token","reason":"userinfo_refused"}"#.to_owned(),
            ),
            Refusal::Userinfo(Failure::Invalid) => (
                None,
                r#"{"error":"bad_gateway","reason":"userinfo_invalid"}"#.to_owned(),
            ),
        };
        let status = self.status();
        let mut headers = vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            ("cache-control".to_owned(), "no-store".to_owned()),
        ];
        if let Some(c) = challenge {
            headers.push(("www-authenticate".to_owned(), c));
        }
        if status == 503 {
            headers.push(("retry-after".to_owned(), "5".to_owned()));
        }
        Response {
            status,
            headers,
            body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(r: &'a Response, name: &str) -> Option<&'a str> {
        r.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn a_missing_token_gets_a_bare_bearer_challenge() {
        let r = Refusal::Missing.render("shop");
        assert_eq!(r.status, 401);
        assert_eq!(r.body, r#"{"error":"missing_token"}"#);
        assert_eq!(
            header(&r, "www-authenticate"),
            Some(r#"Bearer realm="shop""#)
        );
        assert_eq!(header(&r, "cache-control"), Some("no-store"));
        assert_eq!(Refusal::Missing.reason(), "missing_token");
    }

    #[test]
    fn an_invalid_token_names_its_reason_in_challenge_and_body() {
        let r = Refusal::Token("expired").render("m");
        assert_eq!(r.status, 401);
        assert_eq!(r.body, r#"{"error":"invalid_token","reason":"expired"}"#);
        assert_eq!(
            header(&r, "www-authenticate"),
            Some(r#"Bearer realm="m", error="invalid_token", error_description="expired""#)
        );
    }

    #[test]
    fn audience_and_contract_refusals_are_403_without_a_challenge() {
        let f = Refusal::Forbidden("audience_mismatch").render("m");
        assert_eq!(f.status, 403);
        assert_eq!(
            f.body,
            r#"{"error":"forbidden","reason":"audience_mismatch"}"#
        );
        let c = Refusal::Contract("role_not_allowed").render("m");
        assert_eq!(c.status, 403);
        assert_eq!(
            c.body,
            r#"{"error":"contract_violation","reason":"role_not_allowed"}"#
        );
        assert_eq!(header(&c, "www-authenticate"), None);
        assert_eq!(
            Refusal::Contract("role_not_allowed").reason(),
            "role_not_allowed"
        );
    }

    #[test]
    fn a_key_outage_is_503_with_retry_after() {
        let r = Refusal::KeysUnavailable.render("m");
        assert_eq!(r.status, 503);
        assert_eq!(header(&r, "retry-after"), Some("5"));
        assert_eq!(header(&r, "www-authenticate"), None);
        assert_eq!(Refusal::KeysUnavailable.reason(), "keys_unavailable");
    }

    #[test]
    fn a_registry_outage_is_503_with_retry_after() {
        let r = Refusal::RegistryUnavailable.render("m");
        assert_eq!(r.status, 503);
        assert_eq!(header(&r, "retry-after"), Some("5"));
        assert_eq!(
            r.body,
            r#"{"error":"temporarily_unavailable","reason":"registry_unavailable"}"#
        );
        assert_eq!(
            Refusal::RegistryUnavailable.reason(),
            "registry_unavailable"
        );
    }

    #[test]
    fn userinfo_failures_are_503_401_and_502() {
        let u = Refusal::Userinfo(Failure::Unavailable).render("m");
        assert_eq!(u.status, 503);
        assert_eq!(header(&u, "retry-after"), Some("5"));
        let r = Refusal::Userinfo(Failure::Refused).render("m");
        assert_eq!(r.status, 401);
        assert_eq!(
            header(&r, "www-authenticate"),
            Some(
                r#"Bearer realm="m", error="invalid_token", error_description="userinfo_refused""#
            )
        );
        let i = Refusal::Userinfo(Failure::Invalid).render("m");
        assert_eq!(i.status, 502);
        assert_eq!(
            i.body,
            r#"{"error":"bad_gateway","reason":"userinfo_invalid"}"#
        );
    }

    #[test]
    fn an_ambiguous_path_is_a_400_invalid_request() {
        let r = Refusal::AmbiguousPath.render("m");
        assert_eq!(r.status, 400);
        assert_eq!(
            r.body,
            r#"{"error":"invalid_request","reason":"ambiguous_path"}"#
        );
        assert_eq!(header(&r, "content-type"), Some("application/json"));
        assert_eq!(header(&r, "retry-after"), None);
    }
}
