//! Token extraction and removal over random requests: the first line is the
//! `:path`, every other line a `name: value` header (names lowercased, as
//! Envoy passes them). Invariants: a found token comes from one place only;
//! after its removal is applied the same locations find no token at all, and
//! nothing else in the request changed but that one header, cookie or
//! parameter.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mpass_guard::extract::{removal, Carrier, Locations, Removal};

fn locations() -> Locations {
    Locations::compile(
        Some(&[
            ("authorization".to_owned(), "Bearer ".to_owned()),
            ("x-token".to_owned(), String::new()),
        ]),
        &["id_token".to_owned(), "session".to_owned()],
        &["id_token".to_owned(), "access_token".to_owned()],
        "",
    )
    .expect("fixed locations compile")
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let mut path = lines.next().unwrap_or_default().to_owned();
    let mut headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .filter(|(n, _)| !n.is_empty())
        .collect();
    let locs = locations();
    let Ok(Some(found)) = locs.find(&headers, &path) else {
        return;
    };
    // The token borrows from the request; the request changes below.
    let (token, carrier) = (found.token.into_owned(), found.carrier);
    if let Carrier::Header(_) = carrier {
        // A ',' means Envoy joined two credentials: always ambiguous. Other
        // stray bytes are the decoder's business (malformed).
        assert!(!token.contains(','));
    }
    let before_headers = headers.clone();
    let before_path = path.clone();
    match removal(&carrier, &headers, &path) {
        Removal::Remove(name) => headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&name)),
        Removal::Set(name, value) if name == ":path" => path = value,
        Removal::Set(name, value) => {
            headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
            headers.push((name, value));
        }
    }
    assert_eq!(
        locs.find(&headers, &path),
        Ok(None),
        "the token is still there after its removal"
    );
    match &carrier {
        Carrier::Param(_) => {
            assert_eq!(headers, before_headers);
            let base = |p: &str| p.split(['?', '#']).next().unwrap_or_default().to_owned();
            assert_eq!(base(&path), base(&before_path));
        }
        _ => assert_eq!(path, before_path),
    }
});
