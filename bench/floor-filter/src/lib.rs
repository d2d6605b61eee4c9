//! The host-call floor: see Cargo.toml. Root id `floor`.

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root { mode: Rc::new(Mode::Read), extra: Rc::new(Extra::default()) })
    });
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

/// Host calls mpass-guard's warm path makes besides the header map, each
/// switched on by a word in the plugin configuration's `extra` string, so
/// each one's cost is a cell of its own (`floor-release+time`, ...).
#[derive(Default)]
struct Extra {
    /// `time`: `proxy_get_current_time_nanoseconds`, this many times.
    clock_reads: u32,
    /// `record`: one `proxy_set_property` of a decision-record-sized
    /// `Struct` to a declared property (`declare_property` at configure).
    record: Option<Vec<u8>>,
    /// `histogram`: one `proxy_record_metric` to a histogram.
    histogram: Option<u32>,
    /// `route`: `proxy_get_property(["xds","route_name"])`.
    route: bool,
}

struct Root {
    mode: Rc<Mode>,
    extra: Rc<Extra>,
}

/// Property the floor declares and writes (`record`).
const PROPERTY: &str = "floor_record";

/// A protobuf length-delimited field.
fn put_bytes(out: &mut Vec<u8>, field: u8, bytes: &[u8]) {
    out.push(field << 3 | 2);
    let mut n = bytes.len();
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(bytes);
}

/// A `google.protobuf.Struct` of string fields, about the size of
/// mpass-guard's decision record for the benchmark contract (~560 bytes).
fn record() -> Vec<u8> {
    let fields: [(&str, &str); 12] = [
        ("provider", "bench"),
        ("decision", "allow"),
        ("reason", "released"),
        ("released", "uid,given_name,family_name,nickname,role,school_info,education_provider_info"),
        ("withheld", "original_issuer,learner_id"),
        ("contract_version", "3f2a9c1e"),
        ("subject", "p_8c2f0e5b9a7d4c1e3f6a"),
        ("issuer", "https://rs.bench.mpass-guard.test"),
        ("kid", "rsa-a"),
        ("alg", "RS256"),
        ("role_codes", "2,Opettaja"),
        ("organisations", "1.2.246.562.10.00000000001,1.2.246.562.10.00000000004"),
    ];
    let mut out = Vec::new();
    for (k, v) in fields {
        let mut value = Vec::new();
        put_bytes(&mut value, 3, v.as_bytes()); // string_value
        let mut entry = Vec::new();
        put_bytes(&mut entry, 1, k.as_bytes());
        put_bytes(&mut entry, 2, &value);
        put_bytes(&mut out, 1, &entry);
    }
    out
}

/// `DeclarePropertyArguments` for [`PROPERTY`] as a read-only `Struct`.
fn declare_arguments() -> Vec<u8> {
    let mut out = Vec::new();
    put_bytes(&mut out, 1, PROPERTY.as_bytes());
    out.extend_from_slice(&[2 << 3, 1]);
    out.extend_from_slice(&[3 << 3, 3]);
    put_bytes(&mut out, 4, b"type.googleapis.com/google.protobuf.Struct");
    out
}

#[link(wasm_import_module = "env")]
extern "C" {
    #[link_name = "proxy_set_property"]
    fn host_set_property(path: *const u8, path_len: usize, value: *const u8, value_len: usize) -> u32;
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
        let extra = mode
            .windows(9)
            .position(|w| w == b"\"extra\":\"")
            .map(|i| &mode[i + 9..])
            .map(|rest| rest.split(|b| *b == b'"').next().unwrap_or_default())
            .unwrap_or_default();
        let word = |w: &[u8]| extra.split(|b| *b == b',').any(|x| x == w);
        let declared = word(b"record")
            && hostcalls::call_foreign_function("declare_property", Some(&declare_arguments())).is_ok();
        self.extra = Rc::new(Extra {
            clock_reads: if word(b"time") { 3 } else { 0 },
            record: declared.then(record),
            histogram: if word(b"histogram") {
                hostcalls::define_metric(MetricType::Histogram, "floor.decision_time_us").ok()
            } else {
                None
            },
            route: word(b"route"),
        });
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Floor {
            mode: Rc::clone(&self.mode),
            extra: Rc::clone(&self.extra),
        }))
    }
}

struct Floor {
    mode: Rc<Mode>,
    extra: Rc<Extra>,
}

impl Context for Floor {}

impl HttpContext for Floor {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let extra = &*self.extra;
        let mut t = 0u128;
        for _ in 0..extra.clock_reads.min(2) {
            t ^= now_ns();
        }
        let headers = hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default();
        if extra.route {
            let _ = hostcalls::get_property(vec!["xds", "route_name"]);
        }
        if let Some(value) = &extra.record {
            let path = PROPERTY.as_bytes();
            // SAFETY: both buffers outlive the call; the host only reads them.
            let _ = unsafe { host_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len()) };
        }
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
        if extra.clock_reads > 2 {
            t ^= now_ns();
        }
        if let Some(id) = extra.histogram {
            let _ = hostcalls::record_metric(id, (t as u64) & 0xff);
        }
        Action::Continue
    }
}

fn now_ns() -> u128 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos())
}
