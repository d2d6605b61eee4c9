//! Header sanitising and rendering. Invariants: no rendered value holds a
//! control character (or anything outside printable ASCII), every encoding
//! reads back exactly, and the sanitiser lists every identity header a
//! request carries, in any case or `_` spelling.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mpass_guard::forward::{normalise, Sanitiser};
use mpass_guard::render;
use serde_json::{Map, Value};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);

    let single = render::encode_single(&text);
    assert!(render::is_safe_header_value(&single));
    assert_eq!(render::decode_single(&single).as_deref(), Some(&*text));

    let values: Vec<&str> = text.split('\n').collect();
    let multi = render::encode_multi(&values);
    assert!(render::is_safe_header_value(&multi));
    let owned: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
    assert_eq!(render::decode_multi(&multi), Some(owned));

    let mut map = Map::new();
    for (i, v) in values.iter().enumerate() {
        map.insert(format!("c{i}"), Value::String((*v).to_owned()));
    }
    if let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(data) {
        map.extend(m);
    }
    let payload = render::encode_payload(&map);
    assert!(render::is_safe_header_value(&payload));
    assert_eq!(render::decode_payload(&payload), Some(map));

    // Sanitiser: the first line is the strip list (comma-separated), the
    // rest are header names.
    let mut lines = text.split('\n');
    let strip: Vec<String> = lines
        .next()
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let Ok(mut s) = Sanitiser::compile("x-mpass-", &strip, "") else {
        return;
    };
    s.add_emitted("x-shop-email");
    let headers: Vec<(String, String)> = lines.map(|n| (n.to_owned(), String::new())).collect();
    let spoofed = s.spoofed(&headers);
    for (name, _) in &headers {
        let norm = normalise(name);
        assert_eq!(normalise(&norm), norm);
        if name.starts_with(':') {
            continue;
        }
        let identity = norm.starts_with("x-mpass-") || norm == "x-shop-email";
        if identity {
            assert!(s.is_identity_header(name));
        }
        assert_eq!(spoofed.contains(name), s.is_identity_header(name));
        // Every case and `_` spelling is judged alike.
        assert_eq!(
            s.is_identity_header(&name.to_ascii_uppercase().replace('-', "_")),
            s.is_identity_header(name)
        );
    }
});
