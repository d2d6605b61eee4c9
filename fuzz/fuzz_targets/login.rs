//! The browser side of a refusal: `Login::reply` (the HTML refusal page and
//! the restart redirect) with arbitrary provider names, paths, queries,
//! `accept` and `cookie` headers, cookie settings (kept only when
//! `Login::compile` accepts them, as at load) and session cookie names (kept
//! only when they are HTTP tokens, as `session.cookie_names` requires). The
//! input is split at 0xff bytes (never in UTF-8): flags, service, path,
//! query, accept, cookie, cookie_domain, cookie_path, cookie names.
//!
//! Invariants: no panic; no header name or value holds a control character
//! (no CR/LF, so no header injection); a restart is a 302 whose single
//! `Location` is a same-origin relative path (`/`, not `//` or `/\`, visible
//! ASCII) and the request's own path when that is one; a page holds no `<`
//! beyond its template's (the input reaches it escaped) and names the
//! service escaped; an API request keeps the JSON reply.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mpass_guard::engine::{Refusal, Response};
use mpass_guard::login::{self, Browser, Login, LoginConfig};
use mpass_guard::userinfo::Failure;

const REFUSALS: [Refusal; 12] = [
    Refusal::Missing,
    Refusal::Token("expired"),
    Refusal::Token("malformed"),
    Refusal::Userinfo(Failure::Refused),
    Refusal::Userinfo(Failure::Invalid),
    Refusal::Userinfo(Failure::Unavailable),
    Refusal::Contract("organisation_not_permitted"),
    Refusal::Contract("invalid_learner_id"),
    Refusal::Contract("some_other_reason"),
    Refusal::Forbidden("audience_mismatch"),
    Refusal::KeysUnavailable,
    Refusal::AmbiguousPath,
];

const DEFAULT_COOKIES: [&str; 3] = ["OauthHMAC", "BearerToken", "IdToken"];

fn is_same_origin_path(p: &str) -> bool {
    p.starts_with('/')
        && !p.starts_with("//")
        && !p.starts_with("/\\")
        && p.bytes().all(|b| b.is_ascii_graphic())
}

fn check(login: &Login, req: Browser<'_>, refusal: &Refusal, service: &str, cookies: &[String]) {
    let Some((resp, restart)) = login.reply(req, refusal, service, cookies) else {
        return;
    };
    assert!(req.navigates, "an API request got a browser reply");
    for (name, value) in &resp.headers {
        assert!(
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic()),
            "header name {name:?}"
        );
        assert!(
            !value.bytes().any(|b| b.is_ascii_control()),
            "control character in {name}: {value:?}"
        );
    }
    let locations: Vec<&str> = resp
        .headers
        .iter()
        .filter(|(n, _)| n == "location")
        .map(|(_, v)| v.as_str())
        .collect();
    if restart {
        assert_eq!(resp.status, 302);
        assert!(resp.body.is_empty());
        let [location] = locations[..] else {
            panic!("restart without exactly one location: {locations:?}");
        };
        assert!(is_same_origin_path(location), "location {location:?}");
        if is_same_origin_path(req.path) {
            assert_eq!(location, req.path);
        }
        let cleared = resp
            .headers
            .iter()
            .filter(|(n, _)| n == "set-cookie")
            .count();
        assert_eq!(
            cleared,
            cookies.len() + 1,
            "every cookie cleared, marker set"
        );
    } else {
        assert!(locations.is_empty());
        assert!(resp.status >= 400);
        let template = login
            .reply(req, refusal, "", cookies)
            .map(|(r, _)| r.body)
            .unwrap_or_default();
        assert_eq!(
            count_lt(&resp),
            template.matches('<').count(),
            "input reached the page unescaped"
        );
        assert!(resp.body.contains(&login::escape(service)));
    }
}

fn count_lt(r: &Response) -> usize {
    r.body.matches('<').count()
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|&b| b == 0xff);
    let flags = parts.next().unwrap_or_default();
    let mut text = || String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let (service, path, query, accept, cookie) = (text(), text(), text(), text(), text());
    let (domain, cookie_path, names) = (text(), text(), text());
    let flag = |i: usize| flags.get(i).copied().unwrap_or_default();

    let cfg = LoginConfig {
        cookie_domain: (!domain.is_empty()).then_some(domain),
        cookie_path: (!cookie_path.is_empty()).then_some(cookie_path),
        html_refusals: Some(flag(1) & 1 == 0),
    };
    let login = Login::compile(&cfg, "providers.p.login").unwrap_or_else(|_| {
        Login::compile(
            &LoginConfig {
                cookie_domain: None,
                cookie_path: None,
                html_refusals: cfg.html_refusals,
            },
            "providers.p.login",
        )
        .expect("the default login settings compile")
    });
    let mut cookies: Vec<String> = names
        .split(',')
        .filter(|n| mpass_guard::http::is_token(n))
        .map(str::to_owned)
        .collect();
    if cookies.is_empty() {
        cookies = DEFAULT_COOKIES.iter().map(|c| (*c).to_owned()).collect();
    }
    let refusal = &REFUSALS[usize::from(flag(0)) % REFUSALS.len()];

    let target = if query.is_empty() {
        path.clone()
    } else {
        format!("{path}?{query}")
    };
    let method = ["GET", "HEAD", "POST"][usize::from(flag(2)) % 3];
    let headers = vec![
        (":method".to_owned(), method.to_owned()),
        (":path".to_owned(), target.clone()),
        ("accept".to_owned(), accept),
        ("cookie".to_owned(), cookie),
    ];
    check(&login, Browser::of(&headers), refusal, &service, &cookies);
    // The same request as a browser navigation, with and without the
    // loop marker, so every input reaches the page and the redirect.
    for restarted_recently in [false, true] {
        let req = Browser {
            navigates: true,
            restarted_recently,
            path: &target,
        };
        check(&login, req, refusal, &service, &cookies);
    }
});
