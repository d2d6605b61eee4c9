//! Configuration loading from random bytes. Invariants: loading never
//! panics, and a configuration that loads never panics at request time (the
//! engine decides a few fixed requests with it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mpass_guard::config::Config;
use mpass_guard::engine::{Engine, Request};

const SECRET: &str = "fuzz-environment-secret-of-32-bytes!";

fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let env = |name: &str| (!name.is_empty()).then(|| SECRET.to_owned());
    let Ok(config) = Config::load(data, &env) else {
        return;
    };
    let engine = Engine::new(config);
    let mut keys = engine.new_state();
    let requests = [
        h(&[(":authority", "localhost"), (":path", "/")]),
        h(&[
            (":authority", "shop.example:443"),
            (":path", "/shop/x?id_token=a.b.c&q=1"),
            ("authorization", "Bearer a.b.c"),
            ("cookie", "id_token=a.b.c; x=1"),
            ("x-mpass-uid", "spoofed"),
        ]),
    ];
    for headers in &requests {
        for route in [None, Some("library-route")] {
            let req = Request {
                headers,
                route_name: route,
                raw: &[],
            };
            let d = engine.handle(&req, 1_795_694_400_000, &mut keys, false);
            assert!(!d.decision.removals().iter().any(|n| n.starts_with(':')));
            let _ = engine.handle(&req, u64::MAX, &mut keys, true);
        }
    }
});
