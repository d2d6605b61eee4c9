//! `check`: read a file, find every mpass-guard configuration in it, load
//! each one exactly as the filter does, and report everything found.
//!
//! Secrets the configuration names (`hs_secret_env`,
//! `audit.pseudonym_key_env`) live in the VM's environment, which `check`
//! usually cannot see. A variable the file does not pass to the VM at all is
//! an error (the filter will refuse to load). One the VM takes from the
//! proxy's environment (`host_env_keys`, Istio `valueFrom: HOST`) and that is
//! not set in this shell is a warning, checked with a placeholder; with
//! `--env-file` (the proxy's environment, `NAME=VALUE` lines) or `--strict`
//! it is an error.
//!
//! With `--registry FILE`, each loaded configuration's contracts are
//! compared with a saved provisioning snapshot of the management service
//! ([`crate::drift`]) and the drift is listed under the configuration.

use std::cell::RefCell;
use std::path::Path;

use crate::config::Config;
use crate::drift;
use crate::error::ConfigError;
use crate::registry::Snapshot;

use super::doc::{self, Node};
use super::find::{self, Instance, VmEnv};

/// Loads one configuration and returns every error found (each
/// independent error with its field path, as `Config::load` reports them).
pub fn load_all(
    bytes: &[u8],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Vec<ConfigError>> {
    Config::load(bytes, env).map_err(|e| e.all().to_vec())
}

/// Where environment values come from when the file does not give them.
pub struct EnvSource {
    /// `--env-file`: the proxy's environment, exactly.
    pub file: Option<Vec<(String, String)>>,
    /// `--strict`: a secret this shell lacks is an error, not a warning.
    pub strict: bool,
}

/// The placeholder a missing secret is checked with: long enough for every
/// length rule, never a real value.
const PLACEHOLDER_LEN: usize = 64;

impl EnvSource {
    /// Reads a `NAME=VALUE` file (`#` comments, blank lines and an `export `
    /// prefix allowed; values taken literally, one pair of quotes removed).
    pub fn read_env_file(path: &Path) -> Result<Vec<(String, String)>, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut vars = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let line = line.strip_prefix("export ").unwrap_or(line);
            let (name, value) = line.split_once('=').ok_or_else(|| {
                format!("{}: line {}: expected NAME=VALUE", path.display(), n + 1)
            })?;
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(value);
            vars.push((name.trim().to_owned(), value.to_owned()));
        }
        Ok(vars)
    }

    /// A variable from the proxy's environment.
    fn outside(&self, name: &str, warnings: &RefCell<Vec<String>>) -> Option<String> {
        if let Some(vars) = &self.file {
            return vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        }
        if let Ok(v) = std::env::var(name) {
            return Some(v);
        }
        if self.strict {
            return None;
        }
        warnings.borrow_mut().push(format!(
            "secret env {name} not set in this shell: checked with a placeholder; the proxy must have it \
             (--env-file or --strict make this an error)"
        ));
        Some("x".repeat(PLACEHOLDER_LEN))
    }

    /// The VM's environment as `Config::load` sees it for `instance`, with
    /// the warnings and hints this produced.
    fn lookup(
        &self,
        vm: &VmEnv,
        name: &str,
        warnings: &RefCell<Vec<String>>,
        hints: &RefCell<Vec<String>>,
    ) -> Option<String> {
        match vm {
            VmEnv::Unknown => self.outside(name, warnings),
            VmEnv::Declared {
                inline,
                host,
                field,
            } => {
                if let Some((_, v)) = inline.iter().find(|(k, _)| k == name) {
                    return Some(v.clone());
                }
                if host.iter().any(|k| k == name) {
                    return self.outside(name, warnings);
                }
                hints
                    .borrow_mut()
                    .push(format!("{name} is not passed to the VM: add it to {field}"));
                None
            }
        }
    }
}

/// What one run found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub errors: usize,
    pub warnings: usize,
    /// Providers whose contract drifts from the registry snapshot.
    pub drift: usize,
}

/// A file read and searched: its instances, or the syntax error.
pub struct Read {
    pub found: find::Found,
}

/// Reads `path` (`-`: standard input). `Err` is an I/O error (exit 2);
/// a syntax error is `Ok` with the error in `syntax`.
pub fn read(path: &str) -> Result<Result<Read, doc::SyntaxError>, String> {
    let bytes = if path == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
            .map_err(|e| format!("standard input: {e}"))?;
        buf
    } else {
        std::fs::read(path).map_err(|e| format!("{path}: {e}"))?
    };
    if doc::looks_like_json(path, &bytes) {
        return Ok(doc::parse_json(&bytes).map(|node| Read {
            found: find::find(&[node], Some(&bytes)),
        }));
    }
    let text = match std::str::from_utf8(&bytes) {
        Ok(t) => t,
        Err(e) => {
            return Ok(Err(doc::SyntaxError {
                line: 0,
                column: 0,
                message: format!("not UTF-8 text: {e}"),
            }))
        }
    };
    Ok(doc::parse_yaml(text).map(|docs: Vec<Node>| Read {
        found: find::find(&docs, None),
    }))
}

/// The result of loading one instance.
pub struct Loaded {
    pub config: Option<Config>,
    /// `warning: ...` / `error: ...` lines, in order.
    pub lines: Vec<String>,
    pub tally: Tally,
}

/// Loads one instance and says everything about it.
pub fn load_instance(instance: &Instance, env: &EnvSource) -> Loaded {
    let mut lines = Vec::new();
    let mut tally = Tally::default();
    let bytes = match &instance.config {
        Ok(b) => b,
        Err(e) => {
            lines.push(format!("error: {e}"));
            tally.errors += 1;
            return Loaded {
                config: None,
                lines,
                tally,
            };
        }
    };
    // The filter's loader drops positions; a syntax error is found here
    // first so that it keeps its line and column.
    if let Err(e) = doc::parse_json(bytes) {
        let of = if instance.place.is_empty() {
            String::new()
        } else {
            " of the embedded configuration".to_owned()
        };
        let at = if e.line == 0 {
            String::new()
        } else {
            format!("line {} column {}{of}: ", e.line, e.column)
        };
        lines.push(format!("error: {at}{}", e.message));
        tally.errors += 1;
        return Loaded {
            config: None,
            lines,
            tally,
        };
    }
    let warnings = RefCell::new(Vec::new());
    let hints = RefCell::new(Vec::new());
    let lookup = |name: &str| env.lookup(&instance.env, name, &warnings, &hints);
    let result = load_all(bytes, &lookup);
    for w in warnings.borrow().iter() {
        lines.push(format!("warning: {w}"));
        tally.warnings += 1;
    }
    match result {
        Ok(config) => {
            for w in &config.warnings {
                lines.push(format!("warning: {w}"));
                tally.warnings += 1;
            }
            lines.push(format!(
                "ok: {} issuer(s), {} provider(s)",
                config.issuers.len(),
                config.providers.len()
            ));
            Loaded {
                config: Some(config),
                lines,
                tally,
            }
        }
        Err(errors) => {
            for e in errors {
                lines.push(format!("error: {e}"));
                tally.errors += 1;
            }
            for h in hints.borrow().iter() {
                lines.push(format!("  hint: {h}"));
            }
            Loaded {
                config: None,
                lines,
                tally,
            }
        }
    }
}

/// The drift of every provider of `config` from the registry snapshot.
fn registry_drift(config: &Config, snapshot: &Snapshot) -> drift::DriftReport {
    let inputs: Vec<drift::ProviderInput<'_>> = config
        .providers
        .iter()
        .map(|p| drift::ProviderInput {
            id: &p.id,
            audiences: &p.audiences,
            contract: &p.contract,
        })
        .collect();
    drift::compare(&inputs, snapshot, &Default::default())
}

/// `check`: prints the report and returns what it found.
pub fn check(path: &str, env: &EnvSource, registry: Option<&Snapshot>) -> Result<Tally, String> {
    let read = match read(path)? {
        Ok(r) => r,
        Err(e) => {
            println!("error: {path}: {e}");
            return Ok(Tally {
                errors: 1,
                ..Tally::default()
            });
        }
    };
    let mut total = Tally::default();
    for note in &read.found.notes {
        println!("note: {note}");
    }
    if read.found.instances.is_empty() {
        println!("error: {path}: no mpass-guard configuration found (an Envoy Wasm filter with root_id mpass-guard or code mpass_guard.wasm, or an Istio WasmPlugin whose url names mpass-guard)");
        total.errors += 1;
        return Ok(total);
    }
    let many =
        read.found.instances.len() > 1 || !read.found.instances.iter().all(|i| i.place.is_empty());
    for instance in &read.found.instances {
        let loaded = load_instance(instance, env);
        let indent = if many {
            println!("{path}: {}", instance.place);
            "  "
        } else {
            ""
        };
        for line in &loaded.lines {
            println!("{indent}{line}");
        }
        if let (Some(snapshot), Some(config)) = (registry, &loaded.config) {
            let report = registry_drift(config, snapshot);
            for line in report.render_text().lines() {
                println!("{indent}{line}");
            }
            total.drift += report.providers.iter().filter(|p| p.has_drift()).count();
        }
        total.errors += loaded.tally.errors;
        total.warnings += loaded.tally.warnings;
    }
    if read.found.instances.len() > 1 {
        println!(
            "{} mpass-guard configuration(s): {} error(s), {} warning(s)",
            read.found.instances.len(),
            total.errors,
            total.warnings
        );
    }
    Ok(total)
}
