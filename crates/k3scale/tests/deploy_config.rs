//! The configurations shipped under `deploy/` are valid k3scale
//! configurations: `k3scale validate` accepts each of them.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn validate(name: &str, config: &str) {
    let file = std::env::temp_dir().join(format!("k3scale-deploy-{}-{name}.yaml", std::process::id()));
    std::fs::write(&file, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_k3scale"))
        // Their secret files are mounted where they run, not here.
        .args(["validate", "--skip-secret-files", "-c"])
        .arg(&file)
        .output()
        .unwrap();
    std::fs::remove_file(&file).unwrap();
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
