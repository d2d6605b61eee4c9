//! Finding the mpass-guard configurations inside what operators write: a
//! bare plugin configuration, an Envoy configuration (bootstrap, LDS or ECDS
//! resources, an Istio `EnvoyFilter`), or Istio `WasmPlugin` resources.
//!
//! Each configuration found is an [`Instance`] that says where it was and
//! which environment variables its VM is given, so `check` can tell a secret
//! the VM will get from one it never will.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::doc::Node;

const WASM_FILTER: &str = "envoy.extensions.filters.http.wasm.v3.Wasm";
const STRING_VALUE: &str = "google.protobuf.StringValue";
const BYTES_VALUE: &str = "google.protobuf.BytesValue";

/// What the VM's environment holds, as far as the file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmEnv {
    /// A bare configuration: the file does not say.
    Unknown,
    /// Declared by the file: values given inline, names taken from the
    /// proxy's own environment, and where they are declared.
    Declared {
        inline: Vec<(String, String)>,
        host: Vec<String>,
        field: &'static str,
    },
}

/// One mpass-guard configuration found in the file.
#[derive(Debug, Clone)]
pub struct Instance {
    /// Where it was found, for the operator (`""` for a bare file).
    pub place: String,
    /// The plugin configuration JSON, or why it cannot be had.
    pub config: Result<Vec<u8>, String>,
    pub env: VmEnv,
}

/// Everything found in a file.
#[derive(Debug, Default)]
pub struct Found {
    pub instances: Vec<Instance>,
    /// Things passed over (other Wasm plugins, other resources).
    pub notes: Vec<String>,
}

/// Finds every mpass-guard configuration in `docs`. `raw` is the file's own
/// bytes when it is a single JSON document: a bare configuration is then
/// checked byte for byte as the filter reads it.
pub fn find(docs: &[Node], raw: Option<&[u8]>) -> Found {
    let mut found = Found::default();
    let many = docs.len() > 1;
    for (i, doc) in docs.iter().enumerate() {
        let label = if many {
            format!("document {}: ", i + 1)
        } else {
            String::new()
        };
        let before = found.instances.len();
        if doc.str_at("kind") == Some("WasmPlugin") {
            wasm_plugin(doc, &label, &mut found);
            continue;
        }
        if let Some(bytes) = string_value(doc) {
            found.instances.push(Instance {
                place: label.trim_end_matches(": ").to_owned(),
                config: bytes,
                env: VmEnv::Unknown,
            });
            continue;
        }
        walk(doc, &label, &mut found);
        if found.instances.len() > before {
            continue;
        }
        let envoy_or_k8s = [
            "static_resources",
            "dynamic_resources",
            "resources",
            "apiVersion",
        ]
        .iter()
        .any(|k| doc.get(k).is_some());
        if envoy_or_k8s || (many && doc.get("issuers").is_none()) {
            let what = match (
                doc.str_at("kind"),
                doc.get("metadata").and_then(|m| m.str_at("name")),
            ) {
                (Some(kind), Some(name)) => format!("{kind} {name}"),
                (Some(kind), None) => kind.to_owned(),
                _ => "Envoy configuration".to_owned(),
            };
            found
                .notes
                .push(format!("{label}{what}: no mpass-guard plugin in it"));
            continue;
        }
        // Nothing else it could be: a bare plugin configuration.
        let config = match raw {
            Some(bytes) if !many => bytes.to_vec(),
            _ => doc.to_json(),
        };
        found.instances.push(Instance {
            place: label.trim_end_matches(": ").to_owned(),
            config: Ok(config),
            env: VmEnv::Unknown,
        });
    }
    found
}

/// `{"@type": ".../google.protobuf.StringValue", "value": "..."}` (or
/// `BytesValue`, base64): the bytes Envoy hands the plugin.
fn string_value(node: &Node) -> Option<Result<Vec<u8>, String>> {
    let ty = node.str_at("@type")?;
    let value = node.str_at("value");
    if ty.ends_with(STRING_VALUE) {
        return Some(
            value
                .map(|v| v.as_bytes().to_vec())
                .ok_or_else(|| "the StringValue has no string `value`".to_owned()),
        );
    }
    if ty.ends_with(BYTES_VALUE) {
        return Some(match value.map(|v| STANDARD.decode(v)) {
            Some(Ok(bytes)) => Ok(bytes),
            _ => Err("the BytesValue `value` is not base64".to_owned()),
        });
    }
    None
}

/// Appends a path segment: `.name`, or `[i](name)` for a named array item.
fn child(path: &str, segment: &str) -> String {
    if path.is_empty() || path.ends_with(": ") || segment.starts_with('[') {
        format!("{path}{segment}")
    } else {
        format!("{path}.{segment}")
    }
}

/// Walks the tree for Envoy Wasm filter configurations, wherever they sit:
/// HTTP connection managers' `http_filters`, `typed_per_filter_config`, ECDS
/// `extension_config` resources, `TypedStruct` wrappers.
fn walk(node: &Node, path: &str, found: &mut Found) {
    match node {
        Node::Object(members) => {
            let ty = node.str_at("@type").unwrap_or_default();
            if ty.ends_with(WASM_FILTER) {
                if let Some(config) = node.get("config") {
                    plugin(config, &child(path, "config"), found);
                }
                return;
            }
            if ty.ends_with("TypedStruct")
                && node
                    .str_at("type_url")
                    .is_some_and(|t| t.ends_with(WASM_FILTER))
            {
                if let Some(config) = node.get("value").and_then(|v| v.get("config")) {
                    plugin(config, &child(path, "value.config"), found);
                }
                return;
            }
            for (k, v) in members {
                walk(v, &child(path, k), found);
            }
        }
        Node::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let segment = match item.str_at("name") {
                    Some(name) => format!("[{i}]({name})"),
                    None => format!("[{i}]"),
                };
                walk(item, &child(path, &segment), found);
            }
        }
        _ => {}
    }
}

/// An Envoy `PluginConfig`: taken when its `root_id` is `mpass-guard` or its
/// code is a file named `mpass_guard.wasm`.
fn plugin(config: &Node, place: &str, found: &mut Found) {
    let vm = config.get("vm_config");
    let code = vm.and_then(|v| v.get("code"));
    let file = code
        .and_then(|c| c.get("local"))
        .and_then(|l| l.str_at("filename"))
        .or_else(|| {
            code.and_then(|c| c.get("remote"))
                .and_then(|r| r.get("http_uri"))
                .and_then(|h| h.str_at("uri"))
        });
    let root_id = config.str_at("root_id");
    let ours =
        root_id == Some("mpass-guard") || file.is_some_and(|f| f.ends_with("mpass_guard.wasm"));
    if !ours {
        found.notes.push(format!(
            "{place}: another Wasm plugin (root_id {}), not checked",
            root_id.unwrap_or("none")
        ));
        return;
    }
    let env = vm.and_then(|v| v.get("environment_variables"));
    let inline = match env.and_then(|e| e.get("key_values")) {
        Some(Node::Object(kv)) => kv
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
            .collect(),
        _ => Vec::new(),
    };
    let host = match env.and_then(|e| e.get("host_env_keys")) {
        Some(Node::Array(keys)) => keys
            .iter()
            .filter_map(|k| k.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    let config_bytes = match config.get("configuration") {
        None => Err("the plugin has no `configuration`".to_owned()),
        Some(any) => string_value(any).unwrap_or_else(|| {
            Err("`configuration` must be a google.protobuf.StringValue holding the mpass-guard JSON".to_owned())
        }),
    };
    found.instances.push(Instance {
        place: place.to_owned(),
        config: config_bytes,
        env: VmEnv::Declared {
            inline,
            host,
            field: "vm_config.environment_variables",
        },
    });
}

/// An Istio `WasmPlugin`: taken when its `pluginName` is `mpass-guard` or
/// its `url` names mpass-guard; `spec.pluginConfig` is the configuration.
fn wasm_plugin(doc: &Node, label: &str, found: &mut Found) {
    let meta = doc.get("metadata");
    let name = meta.and_then(|m| m.str_at("name")).unwrap_or("(unnamed)");
    let place = match meta.and_then(|m| m.str_at("namespace")) {
        Some(ns) => format!("{label}WasmPlugin {ns}/{name}"),
        None => format!("{label}WasmPlugin {name}"),
    };
    let spec = doc.get("spec");
    let url = spec.and_then(|s| s.str_at("url")).unwrap_or_default();
    let ours = spec.and_then(|s| s.str_at("pluginName")) == Some("mpass-guard")
        || url.contains("mpass-guard")
        || url.contains("mpass_guard");
    if !ours {
        found
            .notes
            .push(format!("{place}: another Wasm plugin ({url}), not checked"));
        return;
    }
    let config = match spec.and_then(|s| s.get("pluginConfig")) {
        Some(node @ Node::Object(_)) => Ok(node.to_json()),
        Some(_) => Err("spec.pluginConfig must be an object".to_owned()),
        None => Err("spec.pluginConfig is missing".to_owned()),
    };
    let (mut inline, mut host) = (Vec::new(), Vec::new());
    if let Some(Node::Array(vars)) = spec
        .and_then(|s| s.get("vmConfig"))
        .and_then(|v| v.get("env"))
    {
        for var in vars {
            let Some(var_name) = var.str_at("name") else {
                continue;
            };
            if var.str_at("valueFrom") == Some("HOST") {
                host.push(var_name.to_owned());
            } else {
                inline.push((
                    var_name.to_owned(),
                    var.str_at("value").unwrap_or_default().to_owned(),
                ));
            }
        }
    }
    found.instances.push(Instance {
        place,
        config,
        env: VmEnv::Declared {
            inline,
            host,
            field: "spec.vmConfig.env",
        },
    });
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::cli::doc::parse_yaml;

    #[test]
    fn a_per_route_override_and_a_typed_struct_are_found_and_named_by_route() {
        let text = r#"
virtual_hosts:
- name: vh
  routes:
  - name: shop
    typed_per_filter_config:
      envoy.filters.http.wasm:
        "@type": type.googleapis.com/envoy.config.route.v3.FilterConfig
        config:
          "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
          config:
            root_id: mpass-guard
            configuration: {"@type": type.googleapis.com/google.protobuf.StringValue, value: "{}"}
http_filters:
- name: envoy.filters.http.wasm
  typed_config:
    "@type": type.googleapis.com/xds.type.v3.TypedStruct
    type_url: type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
    value:
      config:
        vm_config: {code: {remote: {http_uri: {uri: "https://x/mpass_guard.wasm"}}}}
"#;
        let found = find(&parse_yaml(text).unwrap(), None);
        assert_eq!(found.instances.len(), 2, "{found:?}");
        assert_eq!(
            found.instances[0].place,
            "virtual_hosts[0](vh).routes[0](shop).typed_per_filter_config.envoy.filters.http.wasm.config.config"
        );
        assert_eq!(found.instances[0].config, Ok(b"{}".to_vec()));
        assert_eq!(
            found.instances[1].place,
            "http_filters[0](envoy.filters.http.wasm).typed_config.value.config"
        );
        assert!(found.instances[1].config.is_err(), "no configuration");
    }
}
