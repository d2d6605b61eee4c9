//! The native command-line tool behind `src/bin/mpass-guard.rs`: argument
//! parsing (clap), and the four commands.
//!
//! - `check FILE`: every mpass-guard configuration in a bare configuration,
//!   an Envoy configuration or Istio `WasmPlugin`s, loaded as the filter does;
//! - `explain FILE`: what each provider receives;
//! - `mint`: demo and test tokens;
//! - `jwks`: the public JWKS of keys.
//!
//! Exit codes: 0 ok, 1 configuration errors (or warnings with
//! `check --strict`), 2 usage or I/O errors.

pub mod check;
pub mod doc;
pub mod find;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use serde_json::{Map, Value};

use crate::alg::{Alg, KeyFamily};
use crate::drift;
use crate::explain::{self, ClaimsSource};
use crate::mint::{self, KeyFile, SigningKey};
use crate::registry::{Phase, Snapshot};
use crate::report;
use crate::verify::{Untrusted, MAX_TIME};

use check::EnvSource;

const EXIT_CODES: &str = "Exit codes: 0 ok, 1 configuration errors (with --strict also warnings), 2 usage or I/O errors.";

#[derive(Debug, Parser)]
#[command(
    name = "mpass-guard",
    version = env!("CARGO_PKG_VERSION"),
    about = "Check, explain and test mpass-guard configurations with the filter's own code",
    after_help = EXIT_CODES,
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate every mpass-guard configuration in FILE, reporting all it finds.
    ///
    /// FILE is JSON or YAML: a bare plugin configuration, an Envoy
    /// configuration (every envoy.filters.http.wasm filter whose root_id is
    /// mpass-guard or whose code is mpass_guard.wasm) or Istio WasmPlugin
    /// resources (one or several YAML documents). `-` reads standard input.
    #[command(after_help = EXIT_CODES)]
    Check(CheckArgs),
    /// Show which attributes each provider receives, under which purpose and condition.
    #[command(after_help = EXIT_CODES)]
    Explain(ExplainArgs),
    /// Sign a demo or test ID token with realistic MPASSid claims.
    Mint(MintArgs),
    /// Print the public JWKS of keys (private or public PEMs).
    ///
    /// --kid and --alg apply to the --key before them.
    Jwks(JwksArgs),
}

#[derive(Debug, Args)]
struct EnvArgs {
    /// The proxy's environment as NAME=VALUE lines: secrets the VM takes from
    /// the proxy are read here, and a missing one is an error.
    #[arg(long, value_name = "FILE")]
    env_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// The file to check (`-` for standard input).
    #[arg(value_name = "FILE")]
    file: String,
    /// Exit 1 on warnings too (for CI); a secret missing from this shell is an error.
    #[arg(long)]
    strict: bool,
    /// Compare each provider's contract with a saved provisioning snapshot of
    /// the MPASSid management service: one JSON file
    /// {"identityproviders": ..., "serviceproviders": ...} or a directory
    /// holding identityproviders.json and serviceproviders.json. Drift fails
    /// the check with --strict.
    #[arg(long, value_name = "FILE")]
    registry: Option<PathBuf>,
    /// The deployment phase whose integrations count in --registry.
    #[arg(long, value_name = "PHASE", default_value = "production", requires = "registry",
          value_parser = ["production", "preproduction", "testing"])]
    phase: String,
    #[command(flatten)]
    env: EnvArgs,
}

#[derive(Debug, Args)]
struct ExplainArgs {
    /// The configuration file, as for `check` (not with --diff).
    #[arg(
        value_name = "FILE",
        required_unless_present = "diff",
        conflicts_with = "diff"
    )]
    file: Option<String>,
    /// Claims as a JSON object: the exact headers each upstream would get.
    /// With --diff, repeat it: one user per file.
    #[arg(long, value_name = "FILE", conflicts_with = "token", action = clap::ArgAction::Append)]
    claims: Vec<PathBuf>,
    /// A token, decoded WITHOUT verification.
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
    /// Only this provider.
    #[arg(long, value_name = "ID")]
    provider: Option<String>,
    /// Which configuration of FILE, counted from 1 as `check` lists them.
    #[arg(long, value_name = "N")]
    instance: Option<usize>,
    /// Report format; anything but text prints the matrix provider x
    /// controller x attribute (or the --diff) as a table in that format.
    #[arg(long, value_name = "FORMAT", default_value = "text",
          value_parser = ["text", "json", "csv", "markdown"])]
    format: String,
    /// The matrix provider x controller x attribute: who receives what of
    /// whose users, for which purpose, under which condition.
    #[arg(long)]
    matrix: bool,
    /// Which services receive this attribute (alias or claim name), for
    /// which purpose, under which condition.
    #[arg(long, value_name = "NAME", conflicts_with = "diff")]
    attribute: Option<String>,
    /// What each service receives of this education provider's users (OID).
    #[arg(long, value_name = "OID", conflicts_with = "diff")]
    controller: Option<String>,
    /// What changes from configuration OLD to NEW, per provider x controller
    /// x attribute; with --claims, per user what would be released or
    /// refused differently.
    #[arg(long, num_args = 2, value_names = ["OLD", "NEW"])]
    diff: Option<Vec<String>>,
    #[command(flatten)]
    env: EnvArgs,
}

#[derive(Debug, Args)]
struct MintArgs {
    /// A private key PEM (PKCS#8, PKCS#1 or SEC1), or hmac:SECRET.
    #[arg(long, value_name = "PEM|hmac:SECRET")]
    key: String,
    #[arg(long, value_parser = parse_alg)]
    alg: Alg,
    #[arg(long)]
    kid: Option<String>,
    /// Claims as a JSON object (members starting with `_` are notes, dropped).
    #[arg(long, value_name = "FILE")]
    claims: Option<PathBuf>,
    /// Set a claim; VALUE is JSON when it parses as JSON, else a string.
    #[arg(long, value_name = "NAME=VALUE")]
    set: Vec<String>,
    /// Remove a claim.
    #[arg(long, value_name = "NAME")]
    unset: Vec<String>,
    /// Set a header member (VALUE as for --set).
    #[arg(long, value_name = "NAME=VALUE")]
    header: Vec<String>,
    /// `exp` is now plus SECS.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 3600,
        allow_negative_numbers = true
    )]
    exp_in: i64,
    /// `iat` is now plus SECS.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    iat_offset: i64,
    /// No `exp` claim.
    #[arg(long)]
    no_exp: bool,
}

#[derive(Debug, Args)]
struct JwksArgs {
    /// A key PEM: private (PKCS#8, PKCS#1, SEC1) or public (PUBLIC KEY, RSA PUBLIC KEY).
    #[arg(long, value_name = "PEM", required = true)]
    key: Vec<String>,
    /// The kid of the --key before it.
    #[arg(long)]
    kid: Vec<String>,
    /// The alg of the --key before it; it must fit the key's type.
    #[arg(long, value_parser = parse_alg)]
    alg: Vec<Alg>,
}

/// How a key family is named to the operator.
fn family_name(family: KeyFamily) -> &'static str {
    match family {
        KeyFamily::Rsa => "an RSA",
        KeyFamily::EcP256 => "an EC P-256",
        KeyFamily::Ed25519 => "an Ed25519",
        KeyFamily::Hmac => "an HMAC secret",
    }
}

fn parse_alg(name: &str) -> Result<Alg, String> {
    Alg::from_name(name).ok_or_else(|| {
        let all: Vec<&str> = Alg::ALL.iter().map(|a| a.name()).collect();
        format!("unknown algorithm (one of {})", all.join(", "))
    })
}

/// Runs the tool with the process arguments.
pub fn main() -> ExitCode {
    let matches = match Cli::command().try_get_matches() {
        Ok(m) => m,
        Err(e) => return clap_exit(&e),
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => return clap_exit(&e),
    };
    let result = match cli.command {
        Command::Check(args) => cmd_check(&args),
        Command::Explain(args) => cmd_explain(&args),
        Command::Mint(args) => cmd_mint(&args),
        Command::Jwks(args) => match matches.subcommand_matches("jwks") {
            Some(m) => cmd_jwks(&args, m),
            None => Err("jwks: no arguments".into()),
        },
    };
    match result {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("mpass-guard: {msg}");
            ExitCode::from(2)
        }
    }
}

/// Help and version go to stdout with 0; usage errors to stderr with 2.
fn clap_exit(e: &clap::Error) -> ExitCode {
    // Printing can only fail when the terminal is gone.
    let _ = e.print();
    ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2))
}

fn env_source(args: &EnvArgs, strict: bool) -> Result<EnvSource, String> {
    Ok(EnvSource {
        file: args
            .env_file
            .as_deref()
            .map(EnvSource::read_env_file)
            .transpose()?,
        strict,
    })
}

fn cmd_check(args: &CheckArgs) -> Result<ExitCode, String> {
    let env = env_source(&args.env, args.strict)?;
    let registry = match &args.registry {
        Some(path) => Some(read_registry(path, &args.phase)?),
        None => None,
    };
    let tally = check::check(&args.file, &env, registry.as_ref())?;
    if tally.errors > 0 {
        return Ok(ExitCode::FAILURE);
    }
    if args.strict && tally.warnings > 0 {
        println!("--strict: {} warning(s) fail the check", tally.warnings);
        return Ok(ExitCode::FAILURE);
    }
    if args.strict && tally.drift > 0 {
        println!(
            "--strict: {} provider(s) drift from the registry snapshot",
            tally.drift
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// A saved registry snapshot, parsed as the filter parses the live one.
fn read_registry(path: &std::path::Path, phase: &str) -> Result<Snapshot, String> {
    let phase = Phase::from_name(phase).ok_or_else(|| format!("--phase {phase}: unknown"))?;
    let (idps, sps) = drift::read_saved(path)?;
    Snapshot::parse(&idps, &sps, phase).map_err(|e| format!("{}: {e}", path.display()))
}

/// One configuration of a file for `explain`: `Err(code)` when it did not
/// load (its errors are printed).
fn explain_config(
    file: &str,
    wanted: Option<usize>,
    env: &check::EnvSource,
) -> Result<Result<crate::config::Config, ExitCode>, String> {
    let read = match check::read(file)? {
        Ok(r) => r,
        Err(e) => {
            println!("error: {file}: {e}");
            return Ok(Err(ExitCode::FAILURE));
        }
    };
    let instances = &read.found.instances;
    let instance = match (wanted, instances.len()) {
        (_, 0) => {
            println!("error: {file}: no mpass-guard configuration found");
            return Ok(Err(ExitCode::FAILURE));
        }
        (None, 1) => instances.first(),
        (None, n) => {
            let list: Vec<String> = instances
                .iter()
                .enumerate()
                .map(|(i, inst)| format!("  {}: {}", i + 1, inst.place))
                .collect();
            return Err(format!(
                "{file} holds {n} configurations: pick one with --instance N\n{}",
                list.join("\n")
            ));
        }
        (Some(n), len) => n
            .checked_sub(1)
            .and_then(|i| instances.get(i))
            .ok_or_else(|| format!("--instance {n}: {file} holds {len} configuration(s)"))
            .map(Some)?,
    };
    let Some(instance) = instance else {
        return Err("no configuration".into());
    };
    let loaded = check::load_instance(instance, env);
    for line in loaded.lines.iter().filter(|l| !l.starts_with("ok: ")) {
        println!("{line}");
    }
    Ok(loaded.config.ok_or(ExitCode::FAILURE))
}

/// `explain --diff OLD NEW [--claims FILE ...]`.
fn cmd_explain_diff(
    args: &ExplainArgs,
    files: &[String],
    env: &check::EnvSource,
    format: report::Format,
) -> Result<ExitCode, String> {
    let [old_file, new_file] = files else {
        return Err("--diff takes OLD and NEW".into());
    };
    let old = match explain_config(old_file, args.instance, env)? {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let new = match explain_config(new_file, args.instance, env)? {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let mut rows = report::diff(&old, &new);
    if let Some(p) = &args.provider {
        rows.retain(|r| r.first() == Some(p));
    }
    if format == report::Format::Text {
        println!("changes from {old_file} to {new_file} (provider x controller x attribute):");
    }
    print!("{}", report::render(&report::DIFF_COLUMNS, &rows, format));
    if !args.claims.is_empty() {
        let mut users = Vec::new();
        for file in &args.claims {
            let claims = read_claims(file)?;
            let user = file.display().to_string();
            users.extend(report::user_diff(&old, &new, &user, &claims));
        }
        if let Some(p) = &args.provider {
            users.retain(|r| r.get(1) == Some(p));
        }
        if format == report::Format::Text {
            println!("\nper user (claims files; names only, nothing is verified):");
        }
        print!(
            "{}",
            report::render(&report::USER_DIFF_COLUMNS, &users, format)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_explain(args: &ExplainArgs) -> Result<ExitCode, String> {
    let env = env_source(&args.env, false)?;
    let format = report::Format::from_name(&args.format)
        .ok_or_else(|| format!("--format {}: unknown", args.format))?;
    if let Some(files) = &args.diff {
        return cmd_explain_diff(args, files, &env, format);
    }
    let Some(file) = &args.file else {
        return Err("a configuration FILE is required".into());
    };
    let config = match explain_config(file, args.instance, &env)? {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let reporting = format != report::Format::Text
        || args.matrix
        || args.attribute.is_some()
        || args.controller.is_some();
    if reporting {
        if !args.claims.is_empty() || args.token.is_some() {
            return Err(
                "--claims and --token explain one user in text; a report (--format, --matrix, --attribute, --controller) takes none"
                    .into(),
            );
        }
        let view = report::View {
            attribute: args.attribute.as_deref(),
            controller: args.controller.as_deref(),
            provider: args.provider.as_deref(),
        };
        let rows: Vec<Vec<String>> = report::view(&config, view)?
            .iter()
            .map(report::cells)
            .collect();
        if format == report::Format::Text {
            match (&args.attribute, &args.controller) {
                (Some(a), _) => println!("who receives {a}:"),
                (None, Some(c)) => println!("what each service receives of the users of {c}:"),
                (None, None) => println!("provider x controller x attribute:"),
            }
        }
        print!("{}", report::render(&report::MATRIX_COLUMNS, &rows, format));
        return Ok(ExitCode::SUCCESS);
    }
    if args.claims.len() > 1 {
        return Err("--claims: one file (several only with --diff)".into());
    }
    let claims: Option<(Map<String, Value>, ClaimsSource)> =
        match (args.claims.first(), &args.token) {
            (Some(file), _) => Some((read_claims(file)?, ClaimsSource::File)),
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
        args.provider.as_deref(),
        claims.as_ref().map(|(m, s)| (m, *s)),
    )?;
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

/// A claims file, refused where the filter would refuse the same bytes as a
/// token payload: syntax errors keep their position, and the object then
/// goes through the filter's own decoder ([`Untrusted::decode`]) as the
/// payload of an unsigned stand-in token, so duplicate members at any depth
/// and ill-typed registered claims are refused exactly as in the filter.
fn read_claims(file: &std::path::Path) -> Result<Map<String, Value>, String> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    let name = file.display();
    let bytes = std::fs::read(file).map_err(|e| format!("{name}: {e}"))?;
    if let Err(e) = serde_json::from_slice::<Value>(&bytes) {
        return Err(format!("{name}: {e}"));
    }
    let stand_in = format!(
        "{}.{}.AA",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256"}"#),
        URL_SAFE_NO_PAD.encode(&bytes)
    );
    let untrusted = Untrusted::decode(&stand_in, usize::MAX).map_err(|e| {
        format!(
            "{name}: the filter would refuse these claims: {e} ({})",
            e.reason()
        )
    })?;
    let mut claims = untrusted.claims().clone();
    // `_comment` members are notes, as for `mint`.
    claims.retain(|k, _| !k.starts_with('_'));
    Ok(claims)
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

fn split_pair(raw: &str, flag: &str) -> Result<(String, Value), String> {
    let (k, v) = raw
        .split_once('=')
        .ok_or_else(|| format!("{flag} takes NAME=VALUE, got {raw:?}"))?;
    Ok((k.to_owned(), value_of(v)))
}

/// A key for `mint` (private) or `jwks` (either).
fn load_key(spec: &str) -> Result<KeyFile, String> {
    match spec.strip_prefix("hmac:") {
        Some("") => Err("hmac: an empty HMAC secret is refused".into()),
        Some(secret) => Ok(KeyFile::Private(SigningKey::Hmac(
            secret.as_bytes().to_vec(),
        ))),
        None => mint::read_key_file(spec).map_err(|e| format!("{spec}: {e}")),
    }
}

/// `exp`, `iat`, `nbf` must be NumericDates the filter reads: numbers from
/// 0 to 9999-12-31.
fn check_time_claims(claims: &Map<String, Value>) -> Result<(), String> {
    for name in ["exp", "iat", "nbf"] {
        let Some(v) = claims.get(name) else {
            continue;
        };
        let in_range = v
            .as_f64()
            .is_some_and(|t| t.is_finite() && (0.0..=MAX_TIME as f64).contains(&t));
        if !in_range {
            return Err(format!(
                "{name} = {v} is not a time the filter accepts (seconds since 1970, 0 to {MAX_TIME})"
            ));
        }
    }
    Ok(())
}

fn cmd_mint(args: &MintArgs) -> Result<ExitCode, String> {
    let key = match load_key(&args.key)? {
        KeyFile::Private(k) => k,
        KeyFile::Public(_) => {
            return Err(format!(
                "{}: {}",
                args.key,
                mint::MintError::PublicKeyCannotSign
            ))
        }
    };
    if key.family() != args.alg.family() {
        return Err(format!(
            "--alg {} needs {} key; {} is {} key",
            args.alg.name(),
            family_name(args.alg.family()),
            args.key,
            family_name(key.family())
        ));
    }
    let mut claims: Map<String, Value> = match &args.claims {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            match serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))? {
                Value::Object(m) => m,
                _ => return Err(format!("{}: claims must be a JSON object", path.display())),
            }
        }
        None => Map::new(),
    };
    claims.retain(|k, _| !k.starts_with('_'));
    let t = now();
    let overflow = |flag: &str| format!("{flag}: the time overflows");
    let iat = t
        .checked_add(args.iat_offset)
        .ok_or_else(|| overflow("--iat-offset"))?;
    claims.insert("iat".into(), Value::from(iat));
    if !args.no_exp {
        let exp = t
            .checked_add(args.exp_in)
            .ok_or_else(|| overflow("--exp-in"))?;
        claims.insert("exp".into(), Value::from(exp));
    }
    for raw in &args.set {
        let (k, v) = split_pair(raw, "--set")?;
        claims.insert(k, v);
    }
    for k in &args.unset {
        claims.remove(k);
    }
    check_time_claims(&claims)?;
    let mut header = Map::new();
    header.insert("alg".into(), Value::String(args.alg.name().into()));
    header.insert("typ".into(), Value::String("JWT".into()));
    if let Some(kid) = &args.kid {
        header.insert("kid".into(), Value::String(kid.clone()));
    }
    for raw in &args.header {
        let (k, v) = split_pair(raw, "--header")?;
        header.insert(k, v);
    }
    let payload = serde_json::to_vec(&Value::Object(claims)).map_err(|e| e.to_string())?;
    let token = mint::sign_compact(args.alg, &key, &Value::Object(header), &payload)
        .map_err(|e| e.to_string())?;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

/// Pairs each `--kid` / `--alg` with the `--key` before it on the command line.
fn attach<T: Clone>(
    keys: &[usize],
    matches: &ArgMatches,
    flag: &str,
    values: &[T],
) -> Result<Vec<Option<T>>, String> {
    let mut out = vec![None; keys.len()];
    let indices: Vec<usize> = matches
        .indices_of(flag)
        .map(Iterator::collect)
        .unwrap_or_default();
    for (at, value) in indices.iter().zip(values) {
        let owner = keys
            .iter()
            .rposition(|k| k < at)
            .ok_or_else(|| format!("--{flag} follows a --key"))?;
        let slot = out
            .get_mut(owner)
            .ok_or_else(|| format!("--{flag} follows a --key"))?;
        if slot.is_some() {
            return Err(format!("two --{flag} for one --key"));
        }
        *slot = Some(value.clone());
    }
    Ok(out)
}

fn cmd_jwks(args: &JwksArgs, matches: &ArgMatches) -> Result<ExitCode, String> {
    let keys: Vec<usize> = matches
        .indices_of("key")
        .map(Iterator::collect)
        .unwrap_or_default();
    let kids = attach(&keys, matches, "kid", &args.kid)?;
    let algs = attach(&keys, matches, "alg", &args.alg)?;
    let mut jwks = Vec::new();
    for ((path, kid), alg) in args.key.iter().zip(kids).zip(algs) {
        let public = load_key(path)?
            .public_key()
            .map_err(|e| format!("{path}: {e}"))?;
        if let Some(alg) = alg {
            if alg.family() != public.family() {
                return Err(format!(
                    "{path}: --alg {} needs {} key; this is {} key",
                    alg.name(),
                    family_name(alg.family()),
                    family_name(public.family())
                ));
            }
        }
        jwks.push(public.jwk(kid.as_deref(), alg));
    }
    println!("{}", serde_json::json!({ "keys": jwks }));
    Ok(ExitCode::SUCCESS)
}
