//! `mpass-guard`: the native companion tool.
//!
//! - `mint`: sign a demo/test ID token with realistic MPASSid claims.
//! - `jwks`: print the public JWKS for demo/test keys.
//! - `check CONFIG`: validate a plugin configuration exactly as the filter does.
//! - `explain CONFIG [--claims FILE | --token TOKEN] [--provider ID]`: what each
//!   provider receives, under which purpose and condition.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use mpass_guard::alg::Alg;
use mpass_guard::config::Config;
use mpass_guard::explain::{self, ClaimsSource};
use mpass_guard::mint::{self, SigningKey};
use mpass_guard::verify::Untrusted;
use serde_json::{Map, Value};

const USAGE: &str = "usage:
  mpass-guard mint --key PATH|hmac:SECRET --alg ALG [--kid KID] [--claims FILE]
                   [--set NAME=VALUE]... [--unset NAME]... [--header NAME=VALUE]...
                   [--exp-in SECS] [--iat-offset SECS] [--no-exp]
      VALUE is JSON when it parses as JSON, else a string.
  mpass-guard jwks --key PATH [--kid KID] [--alg ALG] [--key PATH ...]
  mpass-guard check CONFIG.json
      exit 0 valid (warnings printed), 1 refused (the field path is printed), 2 usage
  mpass-guard explain CONFIG.json [--claims FILE | --token TOKEN] [--provider ID]
      each provider's contract; with claims, the exact headers its upstream gets.
      --token is decoded WITHOUT verification.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("mint") => cmd_mint(args.get(1..).unwrap_or_default()),
        Some("jwks") => cmd_jwks(args.get(1..).unwrap_or_default()),
        Some("check") => cmd_check(args.get(1..).unwrap_or_default()),
        Some("explain") => mpass_guard_explain(args.get(1..).unwrap_or_default()),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => Err(USAGE.to_owned()),
    };
    match result {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("mpass-guard: {msg}");
            ExitCode::from(2)
        }
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn value_of(raw: &str) -> Value {
    serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()))
}

fn take<'a>(args: &'a [String], i: &mut usize, flag: &str) -> Result<&'a str, String> {
    *i += 1;
    args.get(*i)
        .map(String::as_str)
        .ok_or_else(|| format!("{flag} needs a value"))
}

fn split_pair(raw: &str, flag: &str) -> Result<(String, Value), String> {
    let (k, v) = raw
        .split_once('=')
        .ok_or_else(|| format!("{flag} takes NAME=VALUE"))?;
    Ok((k.to_owned(), value_of(v)))
}

fn parse_alg(name: &str) -> Result<Alg, String> {
    Alg::from_name(name).ok_or_else(|| format!("unknown algorithm {name:?}"))
}

fn load_key(spec: &str) -> Result<SigningKey, String> {
    match spec.strip_prefix("hmac:") {
        Some(secret) => Ok(SigningKey::Hmac(secret.as_bytes().to_vec())),
        None => mint::load_pem(std::path::Path::new(spec)).map_err(|e| format!("{spec}: {e}")),
    }
}

fn cmd_mint(args: &[String]) -> Result<ExitCode, String> {
    let (mut key, mut alg, mut kid, mut claims_file) = (None, None, None, None);
    let (mut sets, mut unsets, mut headers) = (Vec::new(), Vec::new(), Vec::new());
    let (mut exp_in, mut iat_offset, mut no_exp) = (3600i64, 0i64, false);
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        match arg.as_str() {
            "--key" => key = Some(take(args, &mut i, arg)?.to_owned()),
            "--alg" => alg = Some(parse_alg(take(args, &mut i, arg)?)?),
            "--kid" => kid = Some(take(args, &mut i, arg)?.to_owned()),
            "--claims" => claims_file = Some(take(args, &mut i, arg)?.to_owned()),
            "--set" => sets.push(split_pair(take(args, &mut i, arg)?, arg)?),
            "--unset" => unsets.push(take(args, &mut i, arg)?.to_owned()),
            "--header" => headers.push(split_pair(take(args, &mut i, arg)?, arg)?),
            "--exp-in" => {
                exp_in = take(args, &mut i, arg)?
                    .parse()
                    .map_err(|_| "--exp-in takes seconds")?
            }
            "--iat-offset" => {
                iat_offset = take(args, &mut i, arg)?
                    .parse()
                    .map_err(|_| "--iat-offset takes seconds")?
            }
            "--no-exp" => no_exp = true,
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
        i += 1;
    }
    let key = load_key(&key.ok_or("--key is required")?)?;
    let alg = alg.ok_or("--alg is required")?;
    let mut claims: Map<String, Value> = match claims_file {
        Some(path) => {
            let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
            match serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))? {
                Value::Object(m) => m,
                _ => return Err(format!("{path}: claims must be a JSON object")),
            }
        }
        None => Map::new(),
    };
    claims.retain(|k, _| !k.starts_with('_'));
    let t = now();
    claims.insert("iat".into(), Value::from(t + iat_offset));
    if !no_exp {
        claims.insert("exp".into(), Value::from(t + exp_in));
    }
    for (k, v) in sets {
        claims.insert(k, v);
    }
    for k in unsets {
        claims.remove(&k);
    }
    let mut header = Map::new();
    header.insert("alg".into(), Value::String(alg.name().into()));
    header.insert("typ".into(), Value::String("JWT".into()));
    if let Some(kid) = kid {
        header.insert("kid".into(), Value::String(kid));
    }
    for (k, v) in headers {
        header.insert(k, v);
    }
    let payload = serde_json::to_vec(&Value::Object(claims)).map_err(|e| e.to_string())?;
    let token = mint::sign_compact(alg, &key, &Value::Object(header), &payload)
        .map_err(|e| e.to_string())?;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

fn cmd_jwks(args: &[String]) -> Result<ExitCode, String> {
    let mut specs: Vec<(String, Option<String>, Option<Alg>)> = Vec::new();
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        match arg.as_str() {
            "--key" => specs.push((take(args, &mut i, arg)?.to_owned(), None, None)),
            "--kid" => {
                let v = take(args, &mut i, arg)?.to_owned();
                specs.last_mut().ok_or("--kid follows a --key")?.1 = Some(v);
            }
            "--alg" => {
                let v = parse_alg(take(args, &mut i, arg)?)?;
                specs.last_mut().ok_or("--alg follows a --key")?.2 = Some(v);
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
        i += 1;
    }
    if specs.is_empty() {
        return Err("at least one --key is required".into());
    }
    let mut keys = Vec::new();
    for (path, kid, alg) in specs {
        let key = load_key(&path)?;
        keys.push(mint::public_jwk(&key, kid.as_deref(), alg).map_err(|e| format!("{path}: {e}"))?);
    }
    println!("{}", serde_json::json!({ "keys": keys }));
    Ok(ExitCode::SUCCESS)
}

/// Reads a configuration file: either the plugin JSON itself, or an Envoy
/// `StringValue` wrapper (`{"@type": ..., "value": "<json>"}`).
fn read_config(path: &str) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    if let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(&bytes) {
        if let (Some(_), Some(Value::String(inner))) = (m.get("@type"), m.get("value")) {
            return Ok(inner.clone().into_bytes());
        }
    }
    Ok(bytes)
}

/// Secrets named by the configuration are usually absent where `check` runs
/// (a deployment pipeline): stand in a placeholder and say so.
fn env_or_placeholder(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(v) => Some(v),
        Err(_) => {
            println!("note: environment variable {name} is not set here; the filter will require it in the VM");
            Some("x".repeat(32))
        }
    }
}

fn cmd_check(args: &[String]) -> Result<ExitCode, String> {
    let [path] = args else {
        return Err(format!("check takes one CONFIG\n{USAGE}"));
    };
    let bytes = read_config(path)?;
    match Config::load(&bytes, &env_or_placeholder) {
        Ok(config) => {
            for w in &config.warnings {
                println!("warning: {w}");
            }
            println!(
                "ok: {} issuer(s), {} provider(s)",
                config.issuers.len(),
                config.providers.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            for e in errors.all() {
                println!("error: {e}");
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `explain CONFIG [--claims FILE | --token TOKEN] [--provider ID]`: exit 0
/// with the tables, 1 when the configuration is refused, 2 on usage errors.
fn mpass_guard_explain(args: &[String]) -> Result<ExitCode, String> {
    let (mut path, mut claims_file, mut token, mut provider) = (None, None, None, None);
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        match arg.as_str() {
            "--claims" => claims_file = Some(take(args, &mut i, arg)?.to_owned()),
            "--token" => token = Some(take(args, &mut i, arg)?.to_owned()),
            "--provider" => provider = Some(take(args, &mut i, arg)?.to_owned()),
            other if other.starts_with("--") || path.is_some() => {
                return Err(format!("unknown argument {other:?}\n{USAGE}"))
            }
            other => path = Some(other.to_owned()),
        }
        i += 1;
    }
    let path = path.ok_or_else(|| format!("explain takes a CONFIG\n{USAGE}"))?;
    if claims_file.is_some() && token.is_some() {
        return Err("give --claims or --token, not both".into());
    }
    let bytes = read_config(&path)?;
    let config = match Config::load(&bytes, &env_or_placeholder) {
        Ok(c) => c,
        Err(errors) => {
            for e in errors.all() {
                println!("error: {e}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    for w in &config.warnings {
        println!("warning: {w}");
    }
    let claims: Option<(Map<String, Value>, ClaimsSource)> = match (claims_file, token) {
        (Some(file), _) => {
            let text = std::fs::read_to_string(&file).map_err(|e| format!("{file}: {e}"))?;
            match serde_json::from_str(&text).map_err(|e| format!("{file}: {e}"))? {
                Value::Object(mut m) => {
                    // `_comment` keys are notes, as for `mint`.
                    m.retain(|k, _| !k.starts_with('_'));
                    Some((m, ClaimsSource::File))
                }
                _ => return Err(format!("{file}: claims must be a JSON object")),
            }
        }
        (None, Some(t)) => {
            // Decoded by the filter's own strict parser, but NOT verified.
            let untrusted = Untrusted::decode(t.trim(), config.max_token_bytes)
                .map_err(|e| format!("--token: {}", e.reason()))?;
            Some((untrusted.claims().clone(), ClaimsSource::UnverifiedToken))
        }
        (None, None) => None,
    };
    let out = explain::explain(
        &config,
        provider.as_deref(),
        claims.as_ref().map(|(m, s)| (m, *s)),
    )?;
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}
