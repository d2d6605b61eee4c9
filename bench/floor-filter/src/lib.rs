//! The host-call floor: see Cargo.toml. Root id `floor`.

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { mode: Rc::new(Mode::Read) }) });
}}

/// Nine headers, as long as the benchmark contract's rendered values.
const HEADERS: [(&str, &str); 9] = [
    ("x-mpass-uid", "MPASSOID.c0ffee0123456789abcdef0123456789"),
    ("x-mpass-given-name", "Aino"),
    ("x-mpass-family-name", "%C3%84%C3%A4nekoski"),
    ("x-mpass-nickname", "Aino"),
    ("x-mpass-role", r#"["1.2.246.562.10.00000000001;12345;7A;Opettaja;2"]"#),
    ("x-mpass-school-info", r#"["1.2.246.562.10.00000000001;Mansikkalan koulu"]"#),
    ("x-mpass-education-provider-info", r#"["1.2.246.562.10.00000000004;Mansikkala"]"#),
    ("x-mpass-original-issuer", "https%3A%2F%2Fidp.mansikkala.example"),
    ("x-mpass-learner-id", "1.2.246.562.24.00000000001"),
];

/// What the floor does per request (see Cargo.toml).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Read,
    Release,
    Pairs,
}

struct Root {
    mode: Rc<Mode>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let mode = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        let has = |word: &[u8]| mode.windows(word.len()).any(|w| w == word);
        self.mode = Rc::new(if has(b"\"pairs\"") {
            Mode::Pairs
        } else if has(b"\"release\"") {
            Mode::Release
        } else {
            Mode::Read
        });
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Floor {
            mode: Rc::clone(&self.mode),
        }))
    }
}

struct Floor {
    mode: Rc<Mode>,
}

impl Context for Floor {}

impl HttpContext for Floor {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let headers = hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default();
        if headers.is_empty() {
            return Action::Continue;
        }
        match *self.mode {
            Mode::Read => {}
            Mode::Release => {
                let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, "authorization", None);
                for (name, value) in HEADERS {
                    let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value));
                }
            }
            Mode::Pairs => {
                // The same result in one call: the whole map replaced.
                let mut map: Vec<(&str, &[u8])> = headers
                    .iter()
                    .filter(|(n, _)| n != "authorization")
                    .map(|(n, v)| (n.as_str(), v.as_slice()))
                    .collect();
                map.extend(HEADERS.iter().map(|(n, v)| (*n, v.as_bytes())));
                let _ = hostcalls::set_map_bytes(MapType::HttpRequestHeaders, map);
            }
        }
        Action::Continue
    }
}
