//! `k3scale once` as a cron job runs it: a config file, a kubeconfig for
//! the test API server (standing in for the K3s server, with one busy
//! node), the token in the environment, stand-in agents on the real Docker
//! Engine, and a SQLite file.

use crate::kubefix::*;
use crate::support;
use std::path::PathBuf;

pub struct Setup {
    pub docker: support::TestCluster,
    pub k: Kube,
    pub config: PathBuf,
    pub dir: support::TempDir,
}

fn config_text(s: &Setup, kubeconfig: &std::path::Path) -> String {
    format!(
        "cluster: {cluster}
kubernetes: {{ kubeconfig: {kubeconfig} }}
metrics: {{ source: metrics-server }}
policy:
  scale_up: {{ cooldown: 0s }}
  scale_down: {{ unneeded_time: 0s, delay_after_scale_up: 0s, cooldown: 0s }}
state: {{ backend: sqlite, path: {db} }}
pools:
  - name: workers
    min: 0
    max: 3
    template: {{ cpu: \"2\", memory: 4Gi }}
    provider:
      docker:
        image: {image}
        network: {network}
        server_url: https://k3s-server:6443
        token_env: K3SCALE_TEST_TOKEN
        privileged: {privileged}
        stop_timeout: 1s
",
        cluster = s.docker.name,
        kubeconfig = kubeconfig.display(),
        db = s.dir.join("state.db").display(),
        image = support::standin_image(),
        network = s.docker.network,
        privileged = support::engine_allows_privileged(),
    )
}

pub async fn setup(tag: &str) -> Setup {
    let docker = support::TestCluster::new(tag);
    let k = start().await;
    k3s_server(&k);
    let dir = support::TempDir::new(&format!("faults-{tag}"));
    let k3s_yaml = dir.join("k3s.yaml");
    std::fs::write(&k3s_yaml, kubeconfig(&k.server.url(), k.server.token().unwrap())).unwrap();
    let s = Setup {
        docker,
        k,
        config: dir.join("k3scale.yaml"),
        dir,
    };
    std::fs::write(&s.config, config_text(&s, &k3s_yaml)).unwrap();
    s
}

/// Run `k3scale once ARGS`; `crash_at` kills it at that point. Returns the
/// exit code, the signal that killed it, and stdout + stderr.
pub async fn once(s: &Setup, crash_at: Option<&str>, args: &[&str]) -> (Option<i32>, Option<i32>, String) {
    let mut cmd = tokio::process::Command::new(support::k3scale_bin());
    cmd.arg("once")
        .args(args)
        .arg("-c")
        .arg(&s.config)
        .env("K3SCALE_TEST_TOKEN", support::TOKEN);
    if let Some(point) = crash_at {
        cmd.env("K3SCALE_CRASH_AT", point);
    }
    let out = cmd.output().await.unwrap();
    use std::os::unix::process::ExitStatusExt;
    (
        out.status.code(),
        out.status.signal(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}
