//! `mpass-guard-profile`: drive the pure decision engine natively.
//!
//!   mpass-guard-profile decide CONFIG.json TOKENS.txt N [PATH] [CARRIER]
//!       decide N requests, the i-th carrying token i (mod the pool), and
//!       print wall-clock nanoseconds per request and the status mix.
//!       CARRIER `bearer` (default): `Authorization: Bearer`; `session`:
//!       the cookies bench/rotate.lua's session carrier sends (oauth2's
//!       IdToken, BearerToken `at<i>`, OauthHMAC, OauthExpires and an app
//!       cookie), with each session's userinfo call answered in the VM
//!       (`{"sub": the token's sub, "urn:mpass.id:nickname": ...}`, as
//!       bench/run.py's server) outside the collected `decide_one`
//!   mpass-guard-profile mix CONFIG.json TOKENS.txt SEQ.txt
//!       decide one request per line of SEQ (0-based token indices, e.g.
//!       build/bench/zipf-*.txt), the whole sequence, and print the token
//!       cache's hits and misses over its second half (the bench warms up
//!       from the start and measures from the middle), ns per request, and
//!       how much the heap grew over the sequence (see `heap_bytes`)
//!   mpass-guard-profile load CONFIG.json [REPEAT]
//!       time `Config::load` (parse + compile) of CONFIG, best of REPEAT
//!   mpass-guard-profile hash N
//!       SHA-256 of a 1.2 KB signing input, ring against the `sha2` crate,
//!       alternating, best of 5 rounds of N each (ns per digest)
//!   mpass-guard-profile allocs CONFIG TOKENS N [PATH]
//!       heap traffic per decision (native builds only: a counting global
//!       allocator wraps the system one): allocations, reallocations, frees
//!       and bytes requested, for N cold decisions (N distinct tokens, each
//!       seen once) and N warm ones (one token, after one decision to warm
//!       the cache), and the live heap once the cold ones have filled it
//!
//! Used under `valgrind --tool=callgrind` by bench/run.py's profile step.

#[cfg(not(target_arch = "wasm32"))]
mod counting;

#[cfg(not(target_arch = "wasm32"))]
#[global_allocator]
static COUNTING: counting::Counting = counting::Counting;

use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use mpass_guard::config::Config;
use mpass_guard::engine::{Engine, Request, VmState};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("decide") => decide(&args[1..]),
        Some("mix") => mix(&args[1..]),
        Some("load") => load(&args[1..]),
        Some("hash") => hash(&args[1..]),
        #[cfg(not(target_arch = "wasm32"))]
        Some("allocs") => allocs(&args[1..]),
        _ => Err(
            "usage: mpass-guard-profile decide CONFIG TOKENS N [PATH] | mix CONFIG TOKENS SEQ \
             | load CONFIG [REPEAT] | hash N | allocs CONFIG TOKENS N [PATH]"
                .into(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mpass-guard-profile: {e}");
            ExitCode::from(2)
        }
    }
}

fn read(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{path}: {e}"))
}

fn config(path: &str) -> Result<Config, String> {
    Config::load(&read(path)?, &|name| std::env::var(name).ok()).map_err(|e| format!("{path}: {e}"))
}

/// One request's headers.
type Headers = Vec<(String, String)>;

/// The first `n` tokens of the pool file (fewer if the pool is shorter)
/// and their request headers, as the bench's wrk sends them: the token as
/// `Authorization: Bearer`, or with `session` in the cookies
/// bench/rotate.lua's session carrier sends.
fn requests(
    tokens: &str,
    n: usize,
    path: &str,
    session: bool,
) -> Result<(Vec<String>, Vec<Headers>), String> {
    let text = String::from_utf8(read(tokens)?).map_err(|_| "tokens are not UTF-8")?;
    // Only the tokens this run uses: a 20k-token pool would otherwise
    // dominate a short callgrind run.
    let pool: Vec<String> = text
        .lines()
        .filter(|l| !l.is_empty())
        .take(n)
        .map(str::to_owned)
        .collect();
    if pool.is_empty() {
        return Err("empty token pool".into());
    }
    let requests = pool
        .iter()
        .enumerate()
        .map(|(i, token)| {
            let carrier = if session {
                (
                    "cookie".into(),
                    format!(
                        "lang=fi; OauthHMAC=bench-hmac-0123456789abcdef; \
                         OauthExpires=4102444800; BearerToken=at{i}; IdToken={token}"
                    ),
                )
            } else {
                ("authorization".into(), format!("Bearer {token}"))
            };
            vec![
                (":authority".into(), "localhost".into()),
                (":path".into(), path.into()),
                (":method".into(), "GET".into()),
                carrier,
                ("user-agent".into(), "wrk".into()),
            ]
        })
        .collect();
    Ok((pool, requests))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn decide(args: &[String]) -> Result<(), String> {
    let [cfg, tokens, n, rest @ ..] = args else {
        return Err("decide CONFIG TOKENS N [PATH] [CARRIER]".into());
    };
    let n: usize = n.parse().map_err(|_| "N must be a number")?;
    let path = rest.first().map(String::as_str).unwrap_or("/bench/");
    let session = match rest.get(1).map(String::as_str) {
        None | Some("bearer") => false,
        Some("session") => true,
        Some(other) => return Err(format!("unknown carrier {other:?}")),
    };
    let config = config(cfg)?;
    let engine = Engine::new(config);
    let mut keys = engine.new_state();
    let (pool, requests) = requests(tokens, n, path, session)?;
    let now_ms = now_ms();
    let (mut allowed, mut refused) = (0usize, 0usize);
    let start = Instant::now();
    for i in 0..n {
        let headers = &requests[i % requests.len()];
        let mut answer = decide_one(&engine, headers, now_ms, &mut keys, false);
        if let Err(key) = answer {
            // A session's first request: its userinfo call answered here.
            let sub = token_sub(&pool[i % pool.len()]).unwrap_or_default();
            let body = serde_json::json!({"sub": sub, "urn:mpass.id:nickname": "Penkki"});
            for _ in keys.take_userinfo_calls() {}
            let response = mpass_guard::userinfo::Response::Answer {
                status: 200,
                content_type: Some("application/json".into()),
                body: body.to_string().into_bytes(),
            };
            engine.userinfo_response(key, &response, now_ms, &mut keys);
            answer = decide_one(&engine, headers, now_ms, &mut keys, true);
        }
        match answer {
            Ok(None) => allowed += 1,
            Err(_) => {
                eprintln!("still waiting after the userinfo answer");
                refused += 1
            }
            Ok(Some(r)) => {
                if refused == 0 {
                    eprintln!("first refusal: {} {}", r.status, r.body);
                }
                refused += 1
            }
        }
    }
    let ns = start.elapsed().as_nanos() as f64 / n as f64;
    println!("{{\"requests\": {n}, \"ns_per_request\": {ns:.0}, \"allowed\": {allowed}, \"refused\": {refused}}}");
    Ok(())
}

fn mix(args: &[String]) -> Result<(), String> {
    let [cfg, tokens, seq] = args else {
        return Err("mix CONFIG TOKENS SEQ".into());
    };
    let engine = Engine::new(config(cfg)?);
    let mut vm = engine.new_state();
    let text = String::from_utf8(read(tokens)?).map_err(|_| "tokens are not UTF-8")?;
    let pool: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    let order = String::from_utf8(read(seq)?).map_err(|_| "sequence is not UTF-8")?;
    let order: Vec<usize> = order
        .split_whitespace()
        .map(|l| {
            l.parse()
                .map_err(|_| format!("{seq}: {l:?} is not an index"))
        })
        .collect::<Result<_, _>>()?;
    if let Some(&bad) = order.iter().find(|&&i| i >= pool.len()) {
        return Err(format!(
            "{seq}: index {bad} is beyond the pool of {}",
            pool.len()
        ));
    }
    let now_ms = now_ms();
    let header = |i: usize| {
        vec![
            (":authority".to_owned(), "localhost".to_owned()),
            (":path".to_owned(), "/bench/".to_owned()),
            (":method".to_owned(), "GET".to_owned()),
            ("authorization".to_owned(), format!("Bearer {}", pool[i])),
            ("user-agent".to_owned(), "wrk".to_owned()),
        ]
    };
    let (mut hits, mut misses, mut refused) = (0usize, 0usize, 0usize);
    let half = order.len() / 2;
    let heap_before = heap_bytes();
    let start = Instant::now();
    for (n, &i) in order.iter().enumerate() {
        let headers = header(i);
        let outcome = engine.handle(&Request::new(&headers, None), now_ms, &mut vm, false);
        if outcome.decision.response().is_some() {
            refused += 1;
        }
        if n >= half {
            for name in vm.counter_names(&outcome) {
                if name.starts_with("token_cache.") {
                    hits += usize::from(name.ends_with("result=hit"));
                    misses += usize::from(name.ends_with("result=miss"));
                }
            }
        }
    }
    let ns = start.elapsed().as_nanos() as f64 / order.len() as f64;
    let heap_growth = heap_bytes().saturating_sub(heap_before);
    let ratio = hits as f64 / (hits + misses).max(1) as f64;
    println!(
        "{{\"requests\": {}, \"second_half_hits\": {hits}, \"second_half_misses\": {misses}, \
         \"hit_ratio\": {ratio:.4}, \"refused\": {refused}, \"ns_per_request\": {ns:.0}, \
         \"heap_growth_bytes\": {heap_growth}}}",
        order.len()
    );
    Ok(())
}

/// The `sub` claim of a compact JWS (for the userinfo answer).
fn token_sub(token: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&json).ok()?;
    claims.get("sub")?.as_str().map(str::to_owned)
}

/// The heap the run holds: on wasm32 the linear memory's size (it never
/// shrinks, so the growth over a run is what the allocator needed for the
/// engine's data, fragmentation included, as Envoy's VM would show it);
/// natively the bytes allocated and not freed (no fragmentation).
fn heap_bytes() -> usize {
    #[cfg(target_arch = "wasm32")]
    {
        core::arch::wasm32::memory_size(0) * 65536
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        counting::snapshot().live
    }
}

/// One decision; not inlined so that callgrind can collect exactly this
/// (`--toggle-collect=*decide_one*`). `Err(key)`: waiting for the
/// session's userinfo call `key`.
#[inline(never)]
fn decide_one(
    engine: &Engine,
    headers: &[(String, String)],
    now_ms: u64,
    keys: &mut VmState,
    resumed: bool,
) -> Result<Option<mpass_guard::engine::Response>, u64> {
    let outcome = engine.handle(&Request::new(headers, None), now_ms, keys, resumed);
    if let mpass_guard::engine::Decision::Wait(mpass_guard::engine::WaitFor::Userinfo(key)) =
        outcome.decision
    {
        return Err(key);
    }
    // What the glue does in the VM with every outcome besides its host
    // calls: the decision record's bytes and the counter ids.
    let record = outcome.record_bytes();
    let counters = outcome.counter_ids().count();
    std::hint::black_box((record, counters));
    Ok(outcome.decision.response().cloned())
}

/// Heap traffic per decision, cold and warm (see the module doc).
#[cfg(not(target_arch = "wasm32"))]
fn allocs(args: &[String]) -> Result<(), String> {
    let [cfg, tokens, n, rest @ ..] = args else {
        return Err("allocs CONFIG TOKENS N [PATH]".into());
    };
    let n: usize = n.parse().map_err(|_| "N must be a number")?;
    let path = rest.first().map(String::as_str).unwrap_or("/bench/");
    let engine = Engine::new(config(cfg)?);
    let mut vm = engine.new_state();
    let (_, requests) = requests(tokens, n, path, false)?;
    let now_ms = now_ms();
    let per = |a: counting::Snapshot, b: counting::Snapshot, k: usize| {
        let k = k.max(1) as f64;
        format!(
            "{{\"decisions\": {k}, \"allocs\": {:.2}, \"reallocs\": {:.2}, \"frees\": {:.2}, \
             \"bytes\": {:.0}, \"peak_over_start\": {}}}",
            (b.allocs - a.allocs) as f64 / k,
            (b.reallocs - a.reallocs) as f64 / k,
            (b.frees - a.frees) as f64 / k,
            (b.bytes - a.bytes) as f64 / k,
            b.peak.saturating_sub(a.live),
        )
    };
    let mut refused = 0usize;
    let mut run = |vm: &mut VmState, headers: &[(String, String)]| {
        if !matches!(decide_one(&engine, headers, now_ms, vm, false), Ok(None)) {
            refused += 1;
        }
    };
    // Cold: each token once, so every decision misses the token cache.
    let live_before = counting::snapshot().live;
    counting::reset_peak();
    let a = counting::snapshot();
    for headers in &requests {
        run(&mut vm, headers);
    }
    let b = counting::snapshot();
    let cold = per(a, b, requests.len());
    let live_cold = b.live.saturating_sub(live_before);
    // Warm: the first token again and again, after it is cached once more.
    let headers = &requests[0];
    run(&mut vm, headers);
    counting::reset_peak();
    let a = counting::snapshot();
    for _ in 0..n {
        run(&mut vm, headers);
    }
    let b = counting::snapshot();
    let warm = per(a, b, n);
    println!(
        "{{\"cold\": {cold}, \"warm\": {warm}, \"live_after_cold\": {live_cold}, \"refused\": {refused}}}"
    );
    Ok(())
}

fn load(args: &[String]) -> Result<(), String> {
    let [cfg, rest @ ..] = args else {
        return Err("load CONFIG [REPEAT]".into());
    };
    let repeat: usize = rest.first().and_then(|r| r.parse().ok()).unwrap_or(3);
    let bytes = read(cfg)?;
    let mut best = f64::MAX;
    let mut providers = 0;
    for _ in 0..repeat.max(1) {
        let start = Instant::now();
        let c = Config::load(&bytes, &|name| std::env::var(name).ok())
            .map_err(|e| format!("{cfg}: {e}"))?;
        best = best.min(start.elapsed().as_secs_f64());
        providers = c.providers.len();
    }
    println!(
        "{{\"providers\": {providers}, \"bytes\": {}, \"load_seconds\": {best:.6}}}",
        bytes.len()
    );
    Ok(())
}

fn hash(args: &[String]) -> Result<(), String> {
    use sha2::Digest as _;
    let n: u32 = args.first().and_then(|s| s.parse().ok()).ok_or("hash N")?;
    let message: Vec<u8> = (0..1200u32).map(|i| b'A' + (i % 26) as u8).collect();
    let time = |f: &dyn Fn() -> u8| {
        let start = Instant::now();
        let mut acc = 0u8;
        for _ in 0..n {
            acc ^= f();
        }
        std::hint::black_box(acc);
        start.elapsed().as_nanos() as f64 / f64::from(n)
    };
    let ring_one =
        || ring::digest::digest(&ring::digest::SHA256, std::hint::black_box(&message)).as_ref()[0];
    let sha2_one = || sha2::Sha256::digest(std::hint::black_box(&message))[0];
    assert_eq!(
        ring::digest::digest(&ring::digest::SHA256, &message).as_ref(),
        sha2::Sha256::digest(&message).as_slice()
    );
    let (mut best_ring, mut best_sha2) = (f64::MAX, f64::MAX);
    time(&ring_one);
    time(&sha2_one);
    for _ in 0..5 {
        best_ring = best_ring.min(time(&ring_one));
        best_sha2 = best_sha2.min(time(&sha2_one));
    }
    println!("{{\"bytes\": 1200, \"ring_ns\": {best_ring:.0}, \"sha2_ns\": {best_sha2:.0}}}");
    Ok(())
}
