//! `:authority` as a host and an optional port, parsed strictly.
//!
//! Authority matching decides whose contract a request gets, so every
//! spelling an upstream or a later hop could read as the same host must be
//! read as that host here, and every spelling that cannot be one host is
//! refused rather than matched by string. Accepted: a registered name (DNS
//! labels of letters, digits, `-` and `_`, compared case-insensitively, one
//! trailing dot ignored), an IPv4 address, or an IPv6 literal in brackets;
//! then optionally `:` and a port of 1-5 digits without leading zeros, at
//! most 65535. Refused: userinfo (`user@host`), brackets around a name,
//! an empty port (`host:`), leading zeros (`:0443`), empty labels (`a..b`,
//! `..`), and anything else.
//!
//! The match key folds the default ports: `host`, `host:80` and `host:443`
//! are one key, `host:8443` another.

use std::fmt;

/// Why an authority was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorityError {
    Userinfo,
    EmptyPort,
    BadPort,
    BadHost,
}

impl fmt::Display for AuthorityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthorityError::Userinfo => "an authority must not carry userinfo",
            AuthorityError::EmptyPort => "an authority port must not be empty",
            AuthorityError::BadPort => "a port is 1-5 digits without leading zeros, at most 65535",
            AuthorityError::BadHost => "not a host name, IPv4 address or bracketed IPv6 address",
        })
    }
}

impl std::error::Error for AuthorityError {}

/// A parsed authority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    /// Lowercase, without a trailing dot; IPv6 with its brackets.
    pub host: String,
    pub port: Option<u16>,
}

impl Authority {
    /// Parses an authority as a client sent it. The empty string is the
    /// empty authority (HTTP/1.0 without `Host`), which matches only
    /// providers that name no authority.
    pub fn parse(raw: &str) -> Result<Authority, AuthorityError> {
        if raw.is_empty() {
            return Ok(Authority {
                host: String::new(),
                port: None,
            });
        }
        if raw.contains('@') {
            return Err(AuthorityError::Userinfo);
        }
        let (host, port) = if let Some(rest) = raw.strip_prefix('[') {
            let Some((inside, after)) = rest.split_once(']') else {
                return Err(AuthorityError::BadHost);
            };
            if !is_ipv6(inside) {
                return Err(AuthorityError::BadHost);
            }
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or(AuthorityError::BadHost)?),
            };
            (format!("[{}]", inside.to_ascii_lowercase()), port)
        } else {
            let (host, port) = match raw.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (raw, None),
            };
            let host = host.strip_suffix('.').unwrap_or(host);
            if !is_reg_name(host) {
                return Err(AuthorityError::BadHost);
            }
            (host.to_ascii_lowercase(), port)
        };
        let port = match port {
            None => None,
            Some("") => return Err(AuthorityError::EmptyPort),
            Some(p) => Some(parse_port(p)?),
        };
        Ok(Authority { host, port })
    }

    /// The key providers are matched by: the host, with `:port` unless the
    /// port is absent, 80 or 443.
    pub fn key(&self) -> String {
        match self.port {
            None | Some(80) | Some(443) => self.host.clone(),
            Some(p) => format!("{}:{p}", self.host),
        }
    }
}

fn parse_port(p: &str) -> Result<u16, AuthorityError> {
    let digits_only = !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit());
    if !digits_only || p.starts_with('0') {
        return Err(AuthorityError::BadPort);
    }
    p.parse::<u16>().map_err(|_| AuthorityError::BadPort)
}

/// DNS-style labels (letters, digits, `-`, `_`), none empty, at most 63
/// bytes each, 253 in all. Also accepts dotted IPv4, which is all digits.
fn is_reg_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn is_ipv6(s: &str) -> bool {
    s.parse::<std::net::Ipv6Addr>().is_ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn default_ports_case_and_a_trailing_dot_fold_into_one_key() {
        for raw in [
            "shop.studeo.example",
            "SHOP.Studeo.Example",
            "shop.studeo.example.",
            "shop.studeo.example:443",
            "shop.studeo.example:80",
            "shop.studeo.example.:443",
        ] {
            assert_eq!(
                Authority::parse(raw).unwrap().key(),
                "shop.studeo.example",
                "{raw}"
            );
        }
        assert_eq!(
            Authority::parse("shop.studeo.example:8443").unwrap().key(),
            "shop.studeo.example:8443"
        );
        assert_eq!(Authority::parse("[::1]:8080").unwrap().key(), "[::1]:8080");
        assert_eq!(Authority::parse("127.0.0.1").unwrap().key(), "127.0.0.1");
        assert_eq!(Authority::parse("").unwrap().key(), "");
    }

    #[test]
    fn spellings_that_are_not_one_host_are_refused() {
        for (raw, err) in [
            ("user@shop.studeo.example", AuthorityError::Userinfo),
            ("shop.studeo.example@evil", AuthorityError::Userinfo),
            ("shop.studeo.example:", AuthorityError::EmptyPort),
            ("shop.studeo.example:0443", AuthorityError::BadPort),
            ("shop.studeo.example:0", AuthorityError::BadPort),
            ("shop.studeo.example:65536", AuthorityError::BadPort),
            ("shop.studeo.example:abc", AuthorityError::BadPort),
            ("shop.studeo.example:443:443", AuthorityError::BadPort),
            ("[shop.studeo.example]", AuthorityError::BadHost),
            ("..", AuthorityError::BadHost),
            ("shop..studeo.example", AuthorityError::BadHost),
            (".shop.studeo.example", AuthorityError::BadHost),
            ("shop studeo", AuthorityError::BadHost),
            ("shop/x", AuthorityError::BadHost),
            ("[::1", AuthorityError::BadHost),
            ("[::1]x", AuthorityError::BadHost),
            ("shop.example%2e", AuthorityError::BadHost),
        ] {
            assert_eq!(Authority::parse(raw), Err(err), "{raw}");
        }
    }
}
