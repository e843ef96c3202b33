//! Real Docker Engine fixtures: the stand-in agent image, and a per-test
//! cluster (unique name + network) removed on drop, even when a test panics.
use k3scale_core::config::DockerProviderConfig;
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

pub const STANDIN_IMAGE: &str = "k3scale-test/k3s-agent:stand-in";
pub const TOKEN: &str = "K10-test-token::server:do-not-leak-7f3a";

pub fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI runs")
}

/// Build the stand-in image once per test binary.
pub fn standin_image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let busybox = std::path::Path::new("/bin/busybox");
        assert!(
            busybox.exists(),
            "/bin/busybox is missing: install Debian's busybox-static (scripts/test.sh does)"
        );
        let dir = TempDir::new("standin");
        let ctx = dir.path();
        let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/standin");
        for f in ["Dockerfile", "k3s"] {
            std::fs::copy(format!("{fixtures}/{f}"), ctx.join(f)).unwrap();
        }
        std::fs::copy(busybox, ctx.join("busybox")).unwrap();
        let out = docker(&["build", "-q", "-t", STANDIN_IMAGE, ctx.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "docker build: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    STANDIN_IMAGE
}

/// Whether this engine lets containers run privileged (sandboxed engines refuse).
pub fn engine_allows_privileged() -> bool {
    static ALLOWED: OnceLock<bool> = OnceLock::new();
    *ALLOWED.get_or_init(|| {
        let image = standin_image();
        docker(&["run", "--rm", "--privileged", "--entrypoint", "/bin/true", image])
            .status
            .success()
    })
}

/// A Docker provider configuration for the stand-in agent on `cluster`'s network.
pub fn standin_config(cluster: &TestCluster) -> DockerProviderConfig {
    DockerProviderConfig {
        host: None,
        image: standin_image().to_string(),
        network: cluster.network.clone(),
        server_url: "https://k3s-server:6443".into(),
        token_file: None,
        token_env: None,
        extra_args: vec![],
        privileged: engine_allows_privileged(),
        limits: false,
        stop_timeout: "1s".into(),
    }
}

/// A Docker provider for pool `workers` (2 CPU, 4 GiB nodes) on `cluster`,
/// launching the stand-in agent.
pub async fn standin_provider(cluster: &TestCluster) -> k3scale::provider::docker::DockerProvider {
    k3scale::provider::docker::DockerProvider::connect(
        &cluster.name,
        k3scale_core::testkit::pool("workers", 0, 5, 2000, 4 << 30, 0.0),
        standin_config(cluster),
        k3scale::provider::secret::Secret::new(TOKEN),
    )
    .await
    .unwrap()
}

/// The `k3scale` binary cargo built next to the running test binary
/// (`target/<profile>/deps/<test>` → `target/<profile>/k3scale`).
pub fn k3scale_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(std::path::Path::parent)
        .unwrap()
        .join("k3scale");
    assert!(
        bin.exists(),
        "{} is not built (run the tests with cargo)",
        bin.display()
    );
    bin
}

/// A cluster name and Docker network of this test's own.
pub struct TestCluster {
    pub name: String,
    pub network: String,
}

impl TestCluster {
    pub fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "t{}-{}-{tag}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let network = format!("k3scale-{name}");
        let out = docker(&["network", "create", "--label", "k3scale.io/test=true", &network]);
        assert!(
            out.status.success(),
            "docker network create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        TestCluster { name, network }
    }

    /// Names of this cluster's containers, as the docker CLI sees them.
    pub fn containers(&self) -> Vec<String> {
        let filter = format!("label=k3scale.io/cluster={}", self.name);
        let out = docker(&["ps", "-a", "--filter", &filter, "--format", "{{.Names}}"]);
        let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect();
        names.sort();
        names
    }

    pub fn inspect(&self, container: &str) -> serde_json::Value {
        let out = docker(&["inspect", container]);
        assert!(out.status.success(), "docker inspect {container}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v[0].clone()
    }

    pub fn exec(&self, container: &str, args: &[&str]) -> String {
        let mut full = vec!["exec", container];
        full.extend(args);
        String::from_utf8_lossy(&docker(&full).stdout).to_string()
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let mut names = self.containers();
        if !names.is_empty() {
            names.insert(0, "-f".into());
            names.insert(0, "rm".into());
            let args: Vec<&str> = names.iter().map(String::as_str).collect();
            docker(&args);
        }
        docker(&["network", "rm", &self.network]);
    }
}

/// A directory of this test's own (`k3scale-<tag>-XXXXXX` under the
/// system's temp dir), removed on drop, for state databases, kubeconfigs
/// and the scripts exec providers run.
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("k3scale-{tag}-"))
            .tempdir()
            .unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &std::path::Path {
        self.0.path()
    }

    pub fn join(&self, name: &str) -> std::path::PathBuf {
        self.path().join(name)
    }

    /// Write `text` into `name`; returns its path.
    pub fn write(&self, name: &str, text: &str) -> std::path::PathBuf {
        let path = self.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Write an executable shell script; returns its path.
    pub fn script(&self, name: &str, body: &str) -> String {
        let path = self.write(name, &format!("#!/bin/sh\n{body}\n"));
        let status = Command::new("chmod").arg("+x").arg(&path).status().unwrap();
        assert!(status.success(), "chmod +x {}", path.display());
        path.display().to_string()
    }
}
