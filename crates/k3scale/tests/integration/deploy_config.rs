//! The configurations shipped under `deploy/` are valid k3scale
//! configurations: `k3scale validate` accepts each of them.

use std::path::{Path, PathBuf};
use std::process::Command;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn validate(name: &str, config: &str) {
    let dir = k3scale_testsupport::support::TempDir::new("deploy");
    let file = dir.write(&format!("{name}.yaml"), config);
    let out = Command::new(env!("CARGO_BIN_EXE_k3scale"))
        // Their secret files are mounted where they run, not here.
        .args(["validate", "--skip-secret-files", "-c"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_in_cluster_config_map_holds_a_valid_config() {
    let text = std::fs::read_to_string(deploy().join("kubernetes/k3scale/config.yaml")).unwrap();
    let cm: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    let config = cm["data"]["k3scale.yaml"].as_str().unwrap();
    assert!(
        config.contains("backend: kubernetes"),
        "two replicas share state through the API"
    );
    validate("configmap", config);
}

#[test]
fn the_compose_stack_config_is_valid() {
    let config = std::fs::read_to_string(deploy().join("compose/k3scale.yaml")).unwrap();
    assert!(config.contains("network: k3s"), "agents join the compose network");
    validate("compose", &config);
}

/// The README's "A minimal configuration" block.
fn readme_config() -> String {
    let readme = std::fs::read_to_string(deploy().join("../README.md")).unwrap();
    let section = readme
        .split("## A minimal configuration")
        .nth(1)
        .expect("the README shows a minimal configuration");
    let block = section.split("```yaml\n").nth(1).unwrap();
    block.split("\n```").next().unwrap().to_string()
}

#[test]
fn the_readmes_minimal_config_is_valid() {
    validate("readme", &readme_config());
}

/// Every key path of a configuration (`pools[].template.cpu`), leaving out
/// what the user names (labels, environment, extended resources...).
fn key_paths(value: &serde_json::Value, prefix: &str, out: &mut std::collections::BTreeSet<String>) {
    const USER_NAMED: &[&str] = &["labels", "env", "extended_resources", "tags", "headers", "custom"];
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.insert(path.clone());
                if !USER_NAMED.contains(&k.as_str()) {
                    key_paths(v, &path, out);
                }
            }
        }
        serde_json::Value::Array(items) => {
            for v in items {
                key_paths(v, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn every_configuration_key_is_documented() {
    // The effective configuration (defaults filled in) of every shipped one.
    let shipped = [
        k3scale_core::config::DEFAULT_CONFIG.to_string(),
        readme_config(),
        std::fs::read_to_string(deploy().join("compose/k3scale.yaml")).unwrap(),
        {
            let text = std::fs::read_to_string(deploy().join("kubernetes/k3scale/config.yaml")).unwrap();
            let cm: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
            cm["data"]["k3scale.yaml"].as_str().unwrap().to_string()
        },
    ];
    let mut keys = std::collections::BTreeSet::new();
    for text in &shipped {
        let loaded = k3scale_core::config::load("c.yaml", text).unwrap();
        key_paths(&serde_json::to_value(&loaded.config).unwrap(), "", &mut keys);
    }
    // Every word written in `code` in the configuration and provider docs.
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
    let mut text = std::fs::read_to_string(docs.join("configuration.md")).unwrap();
    for entry in std::fs::read_dir(docs.join("providers")).unwrap() {
        text.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap());
    }
    let documented: std::collections::BTreeSet<&str> = text
        .split('`')
        .skip(1)
        .step_by(2)
        .flat_map(|code| code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')))
        .collect();
    let missing: Vec<&String> = keys
        .iter()
        .filter(|path| {
            let leaf = path.rsplit(['.', ']']).next().unwrap_or(path);
            !leaf.is_empty() && !documented.contains(leaf)
        })
        .collect();
    assert!(keys.len() > 40, "{keys:?}");
    assert!(
        missing.is_empty(),
        "keys missing from docs/configuration.md: {missing:?}"
    );
}
