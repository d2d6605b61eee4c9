//! The native CLI: `check` exit codes and warnings, `explain` output.

// An integration test is a test crate: a failed expectation should panic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;
use std::process::{Command, Output};

use mpass_guard::alg::Alg;
use mpass_guard::mint;
use serde_json::{json, Value};

mod common;
use common::{jwks, key, shop_contract, ISS};

const CLI: &str = env!("CARGO_BIN_EXE_mpass-guard");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/claims/");

fn config() -> Value {
    json!({
        "issuers": [{
            "issuer": ISS,
            "local_jwks": {"inline_string": jwks(&[("rsa-a.pem", "rsa-a")])}
        }],
        "audit": {"pseudonym_key_env": "MPASS_GUARD_CLI_TEST_KEY"},
        "providers": {
            "shop": {
                "audiences": ["studeo-webshop"],
                "match": {"path_prefixes": ["/shop/"]},
                "contract": shop_contract()
            },
            "materials": {
                "audiences": ["materials"],
                "match": {"path_prefixes": ["/materials/"]},
                "contract": {
                    "organisations": ["1.2.246.562.10.00000000004"],
                    "release": {"family_name": {}, "school_info": {}}
                }
            }
        }
    })
}

/// Writes `value` to a file of its own for this test.
fn write(name: &str, value: &Value) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mpass-guard-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec(value).unwrap()).unwrap();
    path
}

fn run(args: &[&str]) -> (i32, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(CLI)
        .args(args)
        .env("MPASS_GUARD_CLI_TEST_KEY", "k".repeat(32))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&stdout).into_owned() + &String::from_utf8_lossy(&stderr);
    (status.code().unwrap_or(-1), text)
}

/// Whether one line of `out` holds every part, in order.
fn has_row(out: &str, parts: &[&str]) -> bool {
    out.lines().any(|l| {
        let mut rest = l;
        parts.iter().all(|p| match rest.find(p) {
            Some(i) => {
                rest = &rest[i + p.len()..];
                true
            }
            None => false,
        })
    })
}

#[test]
fn check_accepts_a_valid_configuration_with_exit_0() {
    let path = write("valid.json", &config());
    let (code, out) = run(&["check", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok: 1 issuer(s), 2 provider(s)"), "{out}");
}

#[test]
fn check_prints_contract_warnings_and_still_exits_0() {
    let mut c = config();
    c["providers"]["shop"]["contract"]["release"]["email"] = json!({"purpose": "receipts"});
    c["providers"]["shop"]["contract"]["forward_token"] = json!(true);
    let path = write("warnings.json", &c);
    let (code, out) = run(&["check", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(
            "warning: providers.shop.contract.release.email: email is released to learners too"
        ),
        "{out}"
    );
    assert!(
        out.contains("warning: providers.shop.contract.forward_token: "),
        "{out}"
    );
}

#[test]
fn check_refuses_a_bad_contract_with_exit_1_naming_the_field() {
    let mut c = config();
    c["providers"]["shop"]["contract"]["release"]["mpass_cid"] = json!({});
    let path = write("never.json", &c);
    let (code, out) = run(&["check", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("providers.shop.contract.release.mpass_cid"),
        "{out}"
    );
    assert!(out.contains("never releasable"), "{out}");

    c = config();
    c["providers"]["shop"]["contract"]["release"]["learner_id"] = json!({});
    let path = write("purpose.json", &c);
    let (code, out) = run(&["check", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("needs a non-empty purpose"), "{out}");
}

#[test]
fn check_prints_every_independent_error_on_its_own_line() {
    let mut c = config();
    c["providers"]["shop"]["contract"]["release"]["mpass_cid"] = json!({});
    c["realm"] = json!("");
    c["max_token_bytes"] = json!(1);
    let path = write("many.json", &c);
    let (code, out) = run(&["check", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    let errors: Vec<&str> = out.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 3, "{out}");
    for path in [
        "max_token_bytes",
        "realm",
        "providers.shop.contract.release.mpass_cid",
    ] {
        assert!(
            errors
                .iter()
                .any(|l| l.starts_with(&format!("error: {path}: "))),
            "{path}: {out}"
        );
    }
}

#[test]
fn check_and_explain_exit_2_on_usage_errors() {
    assert_eq!(run(&["check"]).0, 2);
    assert_eq!(run(&["check", "a", "b"]).0, 2);
    assert_eq!(run(&["explain"]).0, 2);
    let path = write("usage.json", &config());
    let p = path.to_str().unwrap();
    let (code, out) = run(&["explain", p, "--provider", "nope"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("materials, shop"), "{out}");
    let claims = format!("{FIXTURES}learner-1.4.json");
    assert_eq!(
        run(&["explain", p, "--claims", &claims, "--token", "a.b.c"]).0,
        2
    );
    assert_eq!(run(&["explain", p, "--token", "not-a-token"]).0, 2);
}

#[test]
fn explain_refuses_a_bad_configuration_with_exit_1() {
    let mut c = config();
    c["providers"]["shop"]["contract"]["release"]["birthdate"] = json!({});
    let path = write("bad-explain.json", &c);
    let (code, out) = run(&["explain", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("providers.shop.contract.release.birthdate"),
        "{out}"
    );
}

#[test]
fn explain_prints_every_provider_contract_as_a_table() {
    let path = write("tables.json", &config());
    let (code, out) = run(&["explain", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("provider materials (contract version "),
        "{out}"
    );
    assert!(out.contains("provider shop (contract version "), "{out}");
    let row = |attr: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(&format!("{attr} ")))
            .unwrap_or_else(|| panic!("no row for {attr}: {out}"))
            .to_owned()
    };
    let email = row("email");
    for part in ["x-mpass-email", "payment receipts", "only roles 2,3,4,5,6"] {
        assert!(email.contains(part), "{part}: {email}");
    }
    assert!(row("given_name").contains("x-shop-first-name"), "{out}");
    assert!(row("school_info").contains("multi (JSON array)"), "{out}");
    assert!(out.contains("identifier form   oid"), "{out}");
    assert!(
        out.contains("organisations     1.2.246.562.10.00000000004"),
        "{out}"
    );
}

#[test]
fn explain_with_claims_shows_the_headers_each_upstream_gets_or_the_denial() {
    let path = write("claims.json", &config());
    let claims = format!("{FIXTURES}teacher-two-providers-1.4.json");
    let (code, out) = run(&["explain", path.to_str().unwrap(), "--claims", &claims]);
    assert_eq!(code, 0, "{out}");
    assert!(
        has_row(
            &out,
            &["x-shop-first-name", "Pekka-%C3%84ij%C3%B6", "Pekka-Äijö"]
        ),
        "{out}"
    );
    assert!(
        has_row(&out, &["x-mpass-family-name", "%C3%96hman", "Öhman"]),
        "{out}"
    );
    // The default identifier form is OIDs only.
    assert!(
        has_row(
            &out,
            &[
                "x-mpass-school-info",
                r#"["1.2.246.562.10.00000000005;\u00c4\u00e4nekosken testilukio"]"#,
                r#"["1.2.246.562.10.00000000005;Äänekosken testilukio"]"#
            ]
        ),
        "{out}"
    );
    // The fixture's aud is the shop's, not the materials service's.
    assert!(out.contains("audience_mismatch"), "{out}");

    let claims = format!("{FIXTURES}test-learner-number.json");
    let (_, out) = run(&[
        "explain",
        path.to_str().unwrap(),
        "--claims",
        &claims,
        "--provider",
        "shop",
    ]);
    assert!(
        out.contains(r#"decision: deny 403 {"error":"contract_violation","reason":"test_identity_not_allowed"}"#),
        "{out}"
    );
}

#[test]
fn explain_decodes_a_token_without_verifying_it_and_says_so() {
    let path = write("token.json", &config());
    let claims = json!({
        "iss": "https://mpass-proxy-test.csc.fi",
        "aud": "studeo-webshop",
        "exp": 1,
        "urn:mpass.id:uid": "MPASSOID.x",
        "given_name": "Öhman",
        "urn:mpass.id:role": ["1.2.246.562.10.00000000001;30076;;Opettaja;2;1.2.246.562.10.2;"],
        "email": "o@example.fi"
    });
    // Signed with a key the configuration does not know, and long expired:
    // explain still shows what the contract would release.
    let other = key("rsa-b.pem");
    let token = mint::sign_compact(
        Alg::RS256,
        &other,
        &json!({"kid": "rsa-b"}),
        &serde_json::to_vec(&claims).unwrap(),
    )
    .unwrap();
    let (code, out) = run(&[
        "explain",
        path.to_str().unwrap(),
        "--token",
        &token,
        "--provider",
        "shop",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("WITHOUT verification"), "{out}");
    assert!(
        has_row(&out, &["x-mpass-email", "o%40example.fi", "o@example.fi"]),
        "{out}"
    );
    assert!(
        out.contains("released: given_name, urn:mpass.id:uid, email"),
        "{out}"
    );
    assert!(!out.contains(&token), "the token was printed");
}

// ------------------------------------------------------------------ the tool

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn keyfile(name: &str) -> String {
    format!("{ROOT}/tests/keys/{name}")
}

/// Runs the tool from `cwd` with exactly the extra environment `env` (the
/// demo's secret is removed unless given).
fn run_in(cwd: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(CLI);
    cmd.current_dir(cwd)
        .args(args)
        .env_remove("STUDEO_CLIENT_SECRET")
        .env("MPASS_GUARD_CLI_TEST_KEY", "k".repeat(32));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

fn write_text(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mpass-guard-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_tool_and_every_subcommand_print_help_and_the_version_with_exit_0() {
    let version = env!("CARGO_PKG_VERSION");
    for sub in [&[][..], &["check"], &["explain"], &["mint"], &["jwks"]] {
        let mut args = sub.to_vec();
        args.push("--help");
        let (code, out) = run(&args);
        assert_eq!(code, 0, "{args:?}: {out}");
        assert!(out.contains("Usage: mpass-guard"), "{args:?}: {out}");
        let mut args = sub.to_vec();
        args.push("--version");
        let (code, out) = run(&args);
        assert_eq!(code, 0, "{args:?}: {out}");
        assert!(out.starts_with("mpass-guard"), "{args:?}: {out}");
        assert!(
            out.trim().ends_with(&format!(" {version}")),
            "{args:?}: {out}"
        );
    }
    let (_, out) = run(&["check", "--help"]);
    assert!(
        out.contains("Exit codes: 0 ok, 1 configuration errors"),
        "{out}"
    );
}

#[test]
fn check_help_prints_help_and_never_opens_a_file_named_help() {
    let dir = write_text("--help", "{ not json")
        .parent()
        .unwrap()
        .to_owned();
    let (code, out) = run_in(dir.to_str().unwrap(), &["check", "--help"], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Usage: mpass-guard check"), "{out}");
    // The file's content would be a syntax error at line 1.
    assert!(!out.contains("line 1 column"), "{out}");
}

#[test]
fn usage_errors_exit_2_and_unknown_options_are_named() {
    let (code, out) = run(&["check", "--nope", "x.json"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("--nope"), "{out}");
    assert_eq!(run(&["mint", "--key", "hmac:s", "--alg", "none"]).0, 2);
    assert_eq!(run(&["check", "/nonexistent/config.yaml"]).0, 2);
}

#[test]
fn check_finds_and_checks_the_configuration_embedded_in_envoy_yaml() {
    let (code, out) = run_in(ROOT, &["check", "--strict", "envoy/envoy.yaml"], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("envoy/envoy.yaml: static_resources.listeners[0](ingress).filter_chains[0]"),
        "{out}"
    );
    assert!(
        out.contains("http_filters[0](envoy.filters.http.wasm)"),
        "{out}"
    );
    assert!(out.contains("ok: 1 issuer(s), 2 provider(s)"), "{out}");
    // The shipped file carries its demo secret inline: nothing to ask the shell for.
    assert!(!out.contains("STUDEO_CLIENT_SECRET"), "{out}");
    let (code, out) = run_in(ROOT, &["check", "envoy/envoy.yaml"], &[]);
    assert_eq!(code, 0, "{out}");
}

/// The shipped envoy.yaml as production runs it: the client secret taken
/// from Envoy's own environment instead of the inline demo value.
fn envoy_yaml_with_host_env_secret() -> PathBuf {
    let shipped = std::fs::read_to_string(format!("{ROOT}/envoy/envoy.yaml")).unwrap();
    let mut out = String::new();
    let mut skip_next = false;
    for line in shipped.lines() {
        if skip_next {
            skip_next = false;
            continue;
        }
        if line.trim() == "key_values:" {
            let indent = &line[..line.len() - line.trim_start().len()];
            out.push_str(&format!(
                "{indent}host_env_keys: [\"STUDEO_CLIENT_SECRET\"]\n"
            ));
            skip_next = true;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    assert!(
        out.contains("host_env_keys: [\"STUDEO"),
        "envoy.yaml changed shape"
    );
    write_text("envoy-host-env.yaml", &out)
}

#[test]
fn a_secret_from_the_proxy_environment_is_a_warning_in_the_shell_and_an_error_with_strict() {
    let file = envoy_yaml_with_host_env_secret();
    let file = file.to_str().unwrap();
    let (code, out) = run_in(ROOT, &["check", file], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("warning: secret env STUDEO_CLIENT_SECRET not set in this shell"),
        "{out}"
    );
    let (code, out) = run_in(ROOT, &["check", "--strict", file], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("providers.studeo.hs_secret_env"), "{out}");
    let secret = [(
        "STUDEO_CLIENT_SECRET",
        "a-demo-secret-of-32-bytes-or-more!!",
    )];
    let (code, out) = run_in(ROOT, &["check", file], &secret);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("STUDEO_CLIENT_SECRET"), "{out}");
}

#[test]
fn check_with_an_env_file_reads_the_proxy_environment_from_it_and_a_missing_secret_is_an_error() {
    let file = envoy_yaml_with_host_env_secret();
    let file = file.to_str().unwrap();
    let empty = write_text("empty.env", "# nothing\n");
    let (code, out) = run_in(
        ROOT,
        &["check", "--env-file", empty.to_str().unwrap(), file],
        &[(
            "STUDEO_CLIENT_SECRET",
            "set-in-the-shell-but-not-in-the-file",
        )],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("providers.studeo.hs_secret_env"), "{out}");
    let full = write_text(
        "full.env",
        "export STUDEO_CLIENT_SECRET=\"a-demo-secret-of-32-bytes-or-more!!\"\n",
    );
    let (code, out) = run_in(
        ROOT,
        &["check", "--env-file", full.to_str().unwrap(), file],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("STUDEO_CLIENT_SECRET"), "{out}");
}

#[test]
fn check_finds_and_checks_the_plugin_config_of_the_istio_wasmplugin() {
    let (code, out) = run_in(ROOT, &["check", "envoy/istio-wasmplugin.yaml"], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("WasmPlugin studeo/mpass-guard"), "{out}");
    assert!(out.contains("ok: 1 issuer(s), 1 provider(s)"), "{out}");
    assert!(out.contains("ServiceEntry mpassid-test"), "{out}");
}

#[test]
fn a_yaml_syntax_error_is_reported_with_line_and_column() {
    let path = write_text(
        "broken.yaml",
        "admin:\n  address: {x: 1\nstatic_resources: []\n",
    );
    let (code, out) = run(&["check", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("broken.yaml: line 3 column "), "{out}");
}

#[test]
fn a_json_syntax_error_keeps_its_line_and_column_in_a_file_and_in_an_embedded_configuration() {
    let path = write_text("broken.json", "{\n  \"issuers\": [\n    ,\n  ]\n}\n");
    let (code, out) = run(&["check", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("line 3 column 5"), "{out}");
    let text = bootstrap(&[wasm_filter("mpass-guard", "{\n \"issuers\": [}")]);
    let path = write_text("embedded-broken.yaml", &text);
    let (code, out) = run(&["check", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("error: line 2 column 14 of the embedded configuration"),
        "{out}"
    );
}

/// An `http_filters` item: the Wasm filter with `root_id` and a JSON
/// configuration (written inside a YAML double-quoted string).
fn wasm_filter(root_id: &str, json: &str) -> String {
    let json = yaml_quoted(json);
    format!(
        r#"
            - name: envoy.filters.http.wasm
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
                config:
                  root_id: {root_id}
                  vm_config:
                    runtime: envoy.wasm.runtime.v8
                    code: {{local: {{filename: plugin.wasm}}}}
                    environment_variables: {{host_env_keys: [MPASS_GUARD_CLI_TEST_KEY]}}
                  configuration:
                    "@type": type.googleapis.com/google.protobuf.StringValue
                    value: "{json}""#
    )
}

/// The inside of a YAML double-quoted scalar holding `text`.
fn yaml_quoted(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A bootstrap with one listener holding `filters`, and an ECDS resource
/// whose configuration has an unknown field.
fn bootstrap(filters: &[String]) -> String {
    format!(
        r#"static_resources:
  listeners:
  - name: front
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          http_filters:{}
            - name: envoy.filters.http.router
"#,
        filters.concat()
    )
}

#[test]
fn several_broken_plugin_instances_in_one_bootstrap_are_all_reported() {
    let good = serde_json::to_string(&config()).unwrap();
    let mut unknown_field = config();
    unknown_field["issuers"][0]["jwks_url"] = json!("https://example.invalid/keys");
    let unknown_field = serde_json::to_string(&unknown_field).unwrap();
    let mut never = config();
    never["providers"]["shop"]["contract"]["release"]["mpass_cid"] = json!({});
    let never = serde_json::to_string(&never).unwrap();
    let mut text = bootstrap(&[
        wasm_filter("mpass-guard", &unknown_field),
        wasm_filter("someone-elses-plugin", "not json at all"),
        wasm_filter("mpass-guard", &good),
    ]);
    // An ECDS resource file (a filesystem subscription), as a second document.
    text.push_str(&format!(
        r#"---
resources:
- "@type": type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig
  name: mpass-guard-ecds
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
    config:
      vm_config:
        code: {{local: {{filename: /etc/envoy/mpass_guard.wasm}}}}
        environment_variables: {{key_values: {{MPASS_GUARD_CLI_TEST_KEY: {}}}}}
      configuration:
        "@type": type.googleapis.com/google.protobuf.StringValue
        value: "{}"
"#,
        "k".repeat(32),
        yaml_quoted(&never)
    ));
    let path = write_text("several.yaml", &text);
    let (code, out) = run(&["check", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("http_filters[0](envoy.filters.http.wasm)"),
        "{out}"
    );
    assert!(
        out.contains("issuers[0]") && out.contains("jwks_url"),
        "{out}"
    );
    assert!(
        out.contains("http_filters[1](envoy.filters.http.wasm).typed_config.config: another Wasm plugin (root_id someone-elses-plugin)"),
        "{out}"
    );
    assert!(
        out.contains("http_filters[2](envoy.filters.http.wasm)"),
        "{out}"
    );
    assert!(
        out.contains("document 2: resources[0](mpass-guard-ecds).typed_config.config"),
        "{out}"
    );
    assert!(
        out.contains("providers.shop.contract.release.mpass_cid"),
        "{out}"
    );
    assert!(
        out.contains("3 mpass-guard configuration(s): 2 error(s)"),
        "{out}"
    );
}

#[test]
fn several_broken_wasmplugin_documents_are_all_reported() {
    let plugin = |name: &str, config: &Value| {
        format!(
            "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {{name: {name}, namespace: edu}}\nspec:\n  url: oci://registry.example/mpass-guard:1\n  vmConfig:\n    env:\n    - {{name: MPASS_GUARD_CLI_TEST_KEY, valueFrom: HOST}}\n  pluginConfig: {}\n",
            serde_json::to_string(config).unwrap()
        )
    };
    let mut a = config();
    a["providers"]["shop"]["contract"]["release"]["birthdate"] = json!({});
    let mut b = config();
    b["realm"] = json!(7);
    let text = [
        plugin("first", &a),
        plugin("second", &b),
        plugin("third", &config()),
    ]
    .join("---\n");
    let path = write_text("plugins.yaml", &text);
    let (code, out) = run(&["check", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("document 1: WasmPlugin edu/first"), "{out}");
    assert!(
        out.contains("providers.shop.contract.release.birthdate"),
        "{out}"
    );
    assert!(out.contains("document 2: WasmPlugin edu/second"), "{out}");
    assert!(out.contains("realm"), "{out}");
    assert!(
        out.contains("3 mpass-guard configuration(s): 2 error(s)"),
        "{out}"
    );
}

#[test]
fn a_secret_the_file_never_passes_to_the_vm_is_an_error_with_a_hint() {
    let mut c = config();
    c["providers"]["shop"]["hs_secret_env"] = json!("SHOP_SECRET");
    let text = format!(
        "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {{name: p}}\nspec:\n  url: oci://r/mpass-guard:1\n  vmConfig:\n    env:\n    - {{name: MPASS_GUARD_CLI_TEST_KEY, value: {}}}\n  pluginConfig: {}\n",
        "k".repeat(32),
        serde_json::to_string(&c).unwrap()
    );
    let path = write_text("no-secret.yaml", &text);
    let (code, out) = run_in(
        ROOT,
        &["check", path.to_str().unwrap()],
        &[("SHOP_SECRET", "in-the-shell-only-0123456789abcdef")],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("providers.shop.hs_secret_env"), "{out}");
    assert!(
        out.contains("hint: SHOP_SECRET is not passed to the VM: add it to spec.vmConfig.env"),
        "{out}"
    );
}

#[test]
fn check_strict_fails_on_warnings_and_a_yaml_bare_configuration_is_read() {
    let mut c = config();
    c["providers"]["shop"]["contract"]["forward_token"] = json!(true);
    let yaml = serde_norway_free_yaml(&c);
    let path = write_text("warn.yaml", &yaml);
    let (code, out) = run(&["check", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("warning: providers.shop.contract.forward_token"),
        "{out}"
    );
    let (code, out) = run(&["check", "--strict", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("--strict:"), "{out}");
}

/// A configuration as YAML block text (JSON flow values are YAML too; the
/// top level is written as block mappings so it is not JSON).
fn serde_norway_free_yaml(v: &Value) -> String {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| format!("{k}: {v}\n"))
        .collect()
}

#[test]
fn a_duplicate_member_in_a_yaml_file_is_an_error_with_its_line() {
    // The position is the mapping that holds the duplicate.
    let path = write_text(
        "dup.yaml",
        "issuers: []\nproviders:\n  shop: {}\n  shop: {}\n",
    );
    let (code, out) = run(&["check", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("line 3 column 3: "), "{out}");
    assert!(out.contains("duplicate member name \"shop\""), "{out}");
}

#[test]
fn explain_claims_refuses_a_duplicate_member_as_the_filter_does() {
    let path = write("dup-claims-config.json", &config());
    for (name, text) in [
        (
            "dup-top.json",
            r#"{"urn:mpass.id:uid": "a", "urn:mpass.id:uid": "b"}"#,
        ),
        ("dup-deep.json", r#"{"x": {"y": 1, "y": 2}}"#),
    ] {
        let claims = write_text(name, text);
        let (code, out) = run(&[
            "explain",
            path.to_str().unwrap(),
            "--claims",
            claims.to_str().unwrap(),
        ]);
        assert_eq!(code, 2, "{out}");
        assert!(out.contains("duplicate_claim"), "{name}: {out}");
    }
    let claims = write_text("exp-string.json", r#"{"exp": "tomorrow"}"#);
    let (code, out) = run(&[
        "explain",
        path.to_str().unwrap(),
        "--claims",
        claims.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("invalid_claim"), "{out}");
}

#[test]
fn explain_reads_the_configuration_out_of_envoy_yaml() {
    let (code, out) = run_in(
        ROOT,
        &["explain", "envoy/envoy.yaml", "--provider", "library"],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("provider library (contract version "), "{out}");
}

fn jwks_of(args: &[&str]) -> Value {
    let mut all = vec!["jwks"];
    all.extend_from_slice(args);
    let (code, out) = run(&all);
    assert_eq!(code, 0, "{args:?}: {out}");
    serde_json::from_str(&out).unwrap()
}

#[test]
fn jwks_reads_every_private_and_public_pem_form_of_a_key_to_the_same_jwk() {
    for (forms, alg) in [
        (
            &[
                "rsa-a.pem",
                "rsa-a.pkcs1.pem",
                "rsa-a.public.pem",
                "rsa-a.pkcs1.pub.pem",
            ][..],
            "RS256",
        ),
        (
            &["ec-p256.pem", "ec-p256.sec1.pem", "ec-p256.pub.pem"][..],
            "ES256",
        ),
        (&["ed25519.pem", "ed25519.pub.pem"][..], "EdDSA"),
    ] {
        let expected = jwks_of(&["--key", &keyfile(forms[0]), "--kid", "k", "--alg", alg]);
        assert_eq!(expected["keys"][0]["alg"], alg);
        for form in forms {
            let got = jwks_of(&["--key", &keyfile(form), "--kid", "k", "--alg", alg]);
            assert_eq!(got, expected, "{form}");
        }
    }
    // --kid and --alg belong to the --key before them.
    let two = jwks_of(&[
        "--key",
        &keyfile("rsa-a.pem"),
        "--kid",
        "a",
        "--key",
        &keyfile("ec-p256.pub.pem"),
        "--kid",
        "e",
        "--alg",
        "ES256",
    ]);
    assert_eq!(two["keys"][0]["kid"], "a");
    assert!(two["keys"][0].get("alg").is_none(), "{two}");
    assert_eq!(two["keys"][1]["kid"], "e");
    assert_eq!(two["keys"][1]["alg"], "ES256");
}

#[test]
fn mint_signs_with_pkcs1_and_sec1_keys_and_the_tokens_verify() {
    use mpass_guard::keys::KeySet;
    use mpass_guard::verify::Untrusted;
    for (pem, public, alg) in [
        ("rsa-a.pkcs1.pem", "rsa-a.public.pem", "RS256"),
        ("ec-p256.sec1.pem", "ec-p256.pub.pem", "ES256"),
    ] {
        let (code, token) = run(&["mint", "--key", &keyfile(pem), "--alg", alg, "--kid", "k"]);
        assert_eq!(code, 0, "{pem}: {token}");
        let jwks = jwks_of(&["--key", &keyfile(public), "--kid", "k", "--alg", alg]);
        let (set, _) = KeySet::parse(jwks.to_string().as_bytes(), &Alg::ALL).unwrap();
        let untrusted = Untrusted::decode(token.trim(), 16 * 1024).unwrap();
        untrusted.verify_with_keyset(&set).unwrap();
    }
}

#[test]
fn mint_refuses_a_public_key_and_says_it_needs_the_private_key() {
    let (code, out) = run(&[
        "mint",
        "--key",
        &keyfile("rsa-a.public.pem"),
        "--alg",
        "RS256",
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("a public key cannot sign: give the private key"),
        "{out}"
    );
}

#[test]
fn a_pem_the_tool_cannot_read_gets_the_openssl_command_that_converts_it() {
    let (code, out) = run(&[
        "mint",
        "--key",
        &keyfile("ec-p256.encrypted.pem"),
        "--alg",
        "ES256",
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("openssl pkcs8 -topk8 -nocrypt -in KEY.pem -out key-pkcs8.pem"),
        "{out}"
    );
    let (code, out) = run(&["jwks", "--key", &keyfile("ec-p256.cert.pem")]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("openssl x509 -in CERT.pem -pubkey -noout"),
        "{out}"
    );
}

#[test]
fn mint_refuses_an_empty_hmac_secret_and_times_that_overflow_or_are_out_of_range() {
    let (code, out) = run(&["mint", "--key", "hmac:", "--alg", "HS256"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("empty HMAC secret"), "{out}");
    let hs = ["mint", "--key", "hmac:secret", "--alg", "HS256"];
    let with = |extra: &[&str]| {
        let mut a = hs.to_vec();
        a.extend_from_slice(extra);
        run(&a)
    };
    let (code, out) = with(&["--exp-in", &i64::MAX.to_string()]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("--exp-in: the time overflows"), "{out}");
    let (code, out) = with(&["--iat-offset", &i64::MIN.to_string()]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("iat = -"), "{out}");
    assert!(out.contains("is not a time the filter accepts"), "{out}");
    for bad in [
        "exp=1e300",
        "nbf=-1",
        "iat=\"yesterday\"",
        "exp=253402300800",
    ] {
        let (code, out) = with(&["--set", bad]);
        assert_eq!(code, 2, "{bad}: {out}");
        assert!(
            out.contains("is not a time the filter accepts"),
            "{bad}: {out}"
        );
    }
    // A fractional NumericDate is a time (RFC 7519 §2).
    assert_eq!(with(&["--set", "exp=1767225600.5"]).0, 0);
    assert_eq!(with(&["--exp-in", "-3600", "--iat-offset", "-7200"]).0, 0);
}

#[test]
fn jwks_and_mint_refuse_an_alg_that_does_not_fit_the_key() {
    let (code, out) = run(&["jwks", "--key", &keyfile("ec-p256.pem"), "--alg", "RS256"]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("--alg RS256 needs an RSA key; this is an EC P-256 key"),
        "{out}"
    );
    let (code, out) = run(&[
        "jwks",
        "--key",
        &keyfile("rsa-a.public.pem"),
        "--alg",
        "EdDSA",
    ]);
    assert_eq!(code, 2, "{out}");
    let (code, out) = run(&["mint", "--key", &keyfile("ed25519.pem"), "--alg", "ES256"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("needs an EC P-256 key"), "{out}");
}

const REGISTRY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/registry/");
/// Permits `oppimateriaali-prod` in production in the saved registry fixtures.
const TESTIKUNTA: &str = "1.2.246.562.10.99887766551";
const VANHA: &str = "1.2.246.562.10.55555555555";

/// One provider for the registry's `oppimateriaali-prod` client id.
fn registry_config(organisations: &[&str], allow_test_learner_id: bool) -> Value {
    let mut c = config();
    c["providers"] = json!({
        "materials": {
            "audiences": ["oppimateriaali-prod"],
            "match": {"path_prefixes": ["/"]},
            "contract": {
                "organisations": organisations,
                "allow_test_learner_id": allow_test_learner_id,
                "release": {"family_name": {}}
            }
        }
    });
    c
}

#[test]
fn check_registry_lists_drift_in_both_snapshot_forms_and_fails_only_with_strict() {
    let drifting = write("drift.json", &registry_config(&[VANHA], false));
    for snapshot in [
        format!("{REGISTRY}snapshot.json"),
        REGISTRY.trim_end_matches('/').to_owned(),
    ] {
        let args = ["check", drifting.to_str().unwrap(), "--registry", &snapshot];
        let (code, out) = run(&args);
        assert_eq!(code, 0, "{out}");
        assert!(
            has_row(&out, &["provider materials", "oppimateriaali-prod"]),
            "{out}"
        );
        assert!(
            has_row(
                &out,
                &["permitted in the registry, missing from the contract"]
            ),
            "{out}"
        );
        assert!(out.contains(TESTIKUNTA), "{out}");
        assert!(out.contains(VANHA), "{out}");
        let (code, out) = run(&[&args[..], &["--strict"]].concat());
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("drift from the registry snapshot"), "{out}");
    }

    // Only the registry's "all services" organisation is left to report.
    let in_step = write("in-step.json", &registry_config(&[TESTIKUNTA], true));
    let (code, out) = run(&[
        "check",
        in_step.to_str().unwrap(),
        "--registry",
        &format!("{REGISTRY}snapshot.json"),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("missing from the contract"), "{out}");
    assert!(!out.contains("not permitted in the registry"), "{out}");
    assert!(out.contains("permits every service"), "{out}");
}

#[test]
fn check_registry_refuses_an_unreadable_snapshot_with_exit_2() {
    let path = write("valid-for-registry.json", &config());
    let garbage = write("garbage-registry.json", &json!({"identityproviders": 1}));
    for snapshot in [garbage.to_str().unwrap(), "/nonexistent/registry.json"] {
        let (code, out) = run(&["check", path.to_str().unwrap(), "--registry", snapshot]);
        assert_eq!(code, 2, "{out}");
        assert!(out.contains(snapshot), "{out}");
    }
}

#[test]
fn check_refuses_an_agreement_that_widens_the_contract_naming_its_path() {
    let mut c = config();
    c["providers"]["materials"]["contract"]["agreements"] = json!({
        "1.2.246.562.10.00000000004": {"release": {"email": {}}}
    });
    c["providers"]["materials"]["contract"]["default_agreement"] = json!("deny");
    let path = write("widening.json", &c);
    let (code, out) = run(&["check", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "providers.materials.contract.agreements[\"1.2.246.562.10.00000000004\"].release[\"email\"]"
        ),
        "{out}"
    );
    assert!(out.contains("widens the contract"), "{out}");
}
