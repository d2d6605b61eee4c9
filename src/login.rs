//! Login-protected providers (`login`): how a refusal reaches a browser.
//! Pure: the engine asks [`Login::reply`] and returns what it renders.
//!
//! Behind Envoy's oauth2 filter the browser holds a session whose ID token
//! can expire (or whose access token the OP can stop honouring) while the
//! oauth2 filter still lets it through. A JSON 401 is a dead end for a
//! person, so a browser navigation (`GET`/`HEAD` accepting `text/html`)
//! whose ID token is missing or expired, or whose access token userinfo
//! refused, is sent back to the same URL with every session cookie cleared:
//! the oauth2 filter then finds no session and starts its flow again. A
//! short-lived marker cookie breaks a redirect loop (an OP minting tokens
//! that are already expired, a clock far off): a second restart within
//! [`LOOP_WINDOW_SECS`] shows a page instead. Contract refusals show a small
//! HTML page naming the service and the reason in plain words, never a
//! claim value. API requests keep the JSON replies.

use serde::Deserialize;

use crate::engine::{Refusal, Response};
use crate::error::ConfigError;

/// The loop guard's cookie (removed from every upstream request).
pub const MARKER_COOKIE: &str = "MpassGuardLogin";
/// How long after a restart another one shows the page instead.
pub const LOOP_WINDOW_SECS: u64 = 30;
/// The reason recorded for a restart.
pub const LOGIN_REQUIRED: &str = "login_required";

/// A provider's `login` object.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginConfig {
    /// `Domain` of the cleared cookies (as the oauth2 filter sets them).
    #[serde(default)]
    pub cookie_domain: Option<String>,
    /// `Path` of the cleared cookies (default `/`).
    #[serde(default)]
    pub cookie_path: Option<String>,
    /// Contract refusals as an HTML page for browsers (default `true`).
    #[serde(default)]
    pub html_refusals: Option<bool>,
}

/// A provider's checked `login` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub cookie_domain: Option<String>,
    pub cookie_path: String,
    pub html_refusals: bool,
}

impl Login {
    /// Compiles a provider's `login` at `path`.
    pub fn compile(cfg: &LoginConfig, path: &str) -> Result<Login, ConfigError> {
        if let Some(d) = &cfg.cookie_domain {
            let host = d.strip_prefix('.').unwrap_or(d);
            let ok = !host.is_empty()
                && host.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-'
                });
            if !ok {
                return Err(ConfigError::new(
                    format!("{path}.cookie_domain"),
                    "must be a lowercase host name",
                ));
            }
        }
        let cookie_path = cfg.cookie_path.clone().unwrap_or_else(|| "/".to_owned());
        if !cookie_path.starts_with('/')
            || !cookie_path
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b';' && b != b',')
        {
            return Err(ConfigError::new(
                format!("{path}.cookie_path"),
                "must start with / and hold no spaces, ';' or ','",
            ));
        }
        Ok(Login {
            cookie_domain: cfg.cookie_domain.clone(),
            cookie_path,
            html_refusals: cfg.html_refusals.unwrap_or(true),
        })
    }

    /// The browser's reply to a refusal, or `None` to keep the JSON one.
    /// `restart` is true when the reply restarts the login.
    pub fn reply(
        &self,
        req: Browser<'_>,
        refusal: &Refusal,
        service: &str,
        session_cookies: &[String],
    ) -> Option<(Response, bool)> {
        if !req.navigates {
            return None;
        }
        let restart = matches!(refusal, Refusal::Missing)
            || matches!(refusal, Refusal::Token("expired"))
            || matches!(
                refusal,
                Refusal::Userinfo(crate::userinfo::Failure::Refused)
            );
        if restart {
            if req.restarted_recently {
                return Some((
                    page(
                        401,
                        service,
                        "Signing in did not complete. Wait a minute, then open this page again. \
                         If this keeps happening, tell the service's support.",
                        LOGIN_REQUIRED,
                    ),
                    false,
                ));
            }
            return Some((self.restart(req.path, session_cookies), true));
        }
        let page_worthy = matches!(refusal, Refusal::Contract(_) | Refusal::Forbidden(_));
        (page_worthy && self.html_refusals).then(|| {
            let reason = refusal.reason();
            (
                page(refusal.status(), service, plain_reason(reason), reason),
                false,
            )
        })
    }

    /// `302` back to the same path, every session cookie cleared, the
    /// loop marker set.
    fn restart(&self, path: &str, session_cookies: &[String]) -> Response {
        let mut attrs = format!("; Path={}", self.cookie_path);
        if let Some(d) = &self.cookie_domain {
            attrs.push_str("; Domain=");
            attrs.push_str(d);
        }
        attrs.push_str("; HttpOnly; Secure; SameSite=Lax");
        let mut headers = vec![
            ("location".to_owned(), same_origin_path(path)),
            ("cache-control".to_owned(), "no-store".to_owned()),
        ];
        for name in session_cookies {
            headers.push((
                "set-cookie".to_owned(),
                format!("{name}=; Max-Age=0{attrs}"),
            ));
        }
        headers.push((
            "set-cookie".to_owned(),
            format!("{MARKER_COOKIE}=1; Max-Age={LOOP_WINDOW_SECS}{attrs}"),
        ));
        Response {
            status: 302,
            headers,
            body: String::new(),
        }
    }
}

/// What the login logic needs of a request.
#[derive(Debug, Clone, Copy)]
pub struct Browser<'a> {
    /// `GET`/`HEAD` accepting `text/html`: a person, not an API client.
    pub navigates: bool,
    /// The loop marker cookie is present.
    pub restarted_recently: bool,
    /// `:path` as received.
    pub path: &'a str,
}

impl<'a> Browser<'a> {
    /// Reads a request's headers (names lowercase).
    pub fn of(headers: &'a [(String, String)]) -> Browser<'a> {
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let method = get(":method").unwrap_or_default();
        let html = headers
            .iter()
            .filter(|(n, _)| n == "accept")
            .flat_map(|(_, v)| v.split(','))
            .any(|m| {
                let mut parts = m.split(';');
                let media = parts.next().unwrap_or_default().trim();
                // `q=0` means "not acceptable" (RFC 9110 12.4.2).
                let refused = parts.any(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .and_then(|q| q.trim().parse::<f32>().ok())
                        .is_some_and(|q| q <= 0.0)
                });
                media.eq_ignore_ascii_case("text/html") && !refused
            });
        let marker = headers
            .iter()
            .filter(|(n, _)| n == "cookie")
            .flat_map(|(_, v)| v.split(';'))
            .any(|c| c.trim().split('=').next() == Some(MARKER_COOKIE));
        Browser {
            navigates: (method == "GET" || method == "HEAD") && html,
            restarted_recently: marker,
            path: get(":path").unwrap_or("/"),
        }
    }
}

/// The path for `Location`: the request's own, never a network-path
/// reference (`//host`, `/\host`), which a browser would take to another
/// site; only visible ASCII (Envoy's `:path` is, this keeps it so).
fn same_origin_path(path: &str) -> String {
    let ok = path.starts_with('/')
        && !path.starts_with("//")
        && !path.starts_with("/\\")
        && path.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        path.to_owned()
    } else {
        "/".to_owned()
    }
}

/// The plain-language sentence for a refusal reason (static text only).
fn plain_reason(reason: &str) -> &'static str {
    match reason {
        "organisation_not_permitted" => {
            "Your school or organisation has no agreement with this service."
        }
        "test_identity_not_allowed" => "Test accounts cannot use this service.",
        "invalid_learner_id" => "Your account's learner number is not valid.",
        "audience_mismatch" => "You signed in for another service.",
        "missing_required_attribute" => {
            "Information this service needs is missing from your account."
        }
        _ => "Your account does not give access to this service.",
    }
}

/// A small HTML page: no script, no style from elsewhere, nothing cached.
fn page(status: u16, service: &str, sentence: &str, reason: &str) -> Response {
    let service = escape(service);
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{service}: access refused</title></head>\n<body>\n\
         <h1>{service}</h1>\n<p>{}</p>\n<p><small>Reason: {}</small></p>\n</body></html>\n",
        escape(sentence),
        escape(reason)
    );
    Response {
        status,
        headers: vec![
            (
                "content-type".to_owned(),
                "text/html; charset=utf-8".to_owned(),
            ),
            (
                "content-security-policy".to_owned(),
                "default-src 'none'".to_owned(),
            ),
            ("cache-control".to_owned(), "no-store".to_owned()),
            ("x-content-type-options".to_owned(), "nosniff".to_owned()),
            ("referrer-policy".to_owned(), "no-referrer".to_owned()),
        ],
        body,
    }
}

/// HTML text escaping (also safe inside a quoted attribute).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn login() -> Login {
        Login::compile(
            &LoginConfig {
                cookie_domain: Some("app.example.fi".into()),
                cookie_path: None,
                html_refusals: None,
            },
            "providers.app.login",
        )
        .unwrap()
    }

    fn headers(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| ((*n).into(), (*v).into()))
            .collect()
    }

    fn cookies() -> Vec<String> {
        vec!["BearerToken".into(), "IdToken".into()]
    }

    #[test]
    fn a_browser_without_a_token_is_sent_back_with_its_session_cookies_cleared() {
        let h = headers(&[
            (":method", "GET"),
            (":path", "/app/page?x=1"),
            ("accept", "text/html,application/xhtml+xml;q=0.9"),
        ]);
        let (r, restart) = login()
            .reply(Browser::of(&h), &Refusal::Missing, "app", &cookies())
            .unwrap();
        assert!(restart);
        assert_eq!(r.status, 302);
        let get = |n: &str| -> Vec<&str> {
            r.headers
                .iter()
                .filter(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        assert_eq!(get("location"), ["/app/page?x=1"]);
        assert_eq!(get("cache-control"), ["no-store"]);
        assert_eq!(
            get("set-cookie"),
            [
                "BearerToken=; Max-Age=0; Path=/; Domain=app.example.fi; HttpOnly; Secure; SameSite=Lax",
                "IdToken=; Max-Age=0; Path=/; Domain=app.example.fi; HttpOnly; Secure; SameSite=Lax",
                "MpassGuardLogin=1; Max-Age=30; Path=/; Domain=app.example.fi; HttpOnly; Secure; SameSite=Lax",
            ]
        );
    }

    #[test]
    fn an_api_request_keeps_the_json_reply() {
        for h in [
            headers(&[(":method", "GET"), ("accept", "application/json")]),
            headers(&[(":method", "POST"), ("accept", "text/html")]),
            headers(&[(":method", "GET"), ("accept", "text/html;q=0")]),
            headers(&[(":method", "GET")]),
        ] {
            assert!(login()
                .reply(Browser::of(&h), &Refusal::Missing, "app", &cookies())
                .is_none());
        }
    }

    #[test]
    fn a_second_restart_within_the_window_shows_a_page_instead() {
        let h = headers(&[
            (":method", "GET"),
            (":path", "/"),
            ("accept", "text/html"),
            ("cookie", "a=b; MpassGuardLogin=1"),
        ]);
        let (r, restart) = login()
            .reply(
                Browser::of(&h),
                &Refusal::Token("expired"),
                "app",
                &cookies(),
            )
            .unwrap();
        assert!(!restart);
        assert_eq!(r.status, 401);
        assert!(r.body.contains("did not complete"));
    }

    #[test]
    fn a_network_path_is_never_a_redirect_target() {
        assert_eq!(same_origin_path("//evil.example/x"), "/");
        assert_eq!(same_origin_path("/\\evil.example"), "/");
        assert_eq!(same_origin_path("/ok/%2F%2Fx?a=b"), "/ok/%2F%2Fx?a=b");
    }

    #[test]
    fn a_contract_refusal_page_is_escaped_and_locked_down() {
        let h = headers(&[(":method", "GET"), (":path", "/"), ("accept", "text/html")]);
        let (r, restart) = login()
            .reply(
                Browser::of(&h),
                &Refusal::Contract("organisation_not_permitted"),
                "<script>alert(1)</script>&\"'",
                &cookies(),
            )
            .unwrap();
        assert!(!restart);
        assert_eq!(r.status, 403);
        assert!(!r.body.contains("<script>"));
        assert!(r
            .body
            .contains("&lt;script&gt;alert(1)&lt;/script&gt;&amp;&quot;&#39;"));
        assert!(r.body.contains("no agreement with this service"));
        let has = |n: &str, v: &str| r.headers.iter().any(|(k, x)| k == n && x == v);
        assert!(has("content-type", "text/html; charset=utf-8"));
        assert!(has("content-security-policy", "default-src 'none'"));
        assert!(has("cache-control", "no-store"));
    }

    #[test]
    fn html_refusals_can_be_turned_off_and_outages_stay_json() {
        let h = headers(&[(":method", "GET"), (":path", "/"), ("accept", "text/html")]);
        let mut l = login();
        assert!(l
            .reply(
                Browser::of(&h),
                &Refusal::KeysUnavailable,
                "app",
                &cookies()
            )
            .is_none());
        l.html_refusals = false;
        assert!(l
            .reply(
                Browser::of(&h),
                &Refusal::Contract("test_identity_not_allowed"),
                "app",
                &cookies()
            )
            .is_none());
    }

    #[test]
    fn bad_cookie_settings_name_their_field() {
        let bad = [
            (
                Some("Evil Domain"),
                None,
                "providers.app.login.cookie_domain",
            ),
            (None, Some("app"), "providers.app.login.cookie_path"),
            (None, Some("/a;b"), "providers.app.login.cookie_path"),
        ];
        for (d, p, path) in bad {
            let e = Login::compile(
                &LoginConfig {
                    cookie_domain: d.map(Into::into),
                    cookie_path: p.map(Into::into),
                    html_refusals: None,
                },
                "providers.app.login",
            )
            .unwrap_err();
            assert_eq!(e.path, path);
        }
    }
}
