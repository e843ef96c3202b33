//! Stamps the build for `k3scale --version` and `k3scale_build_info`: the
//! git commit (when built from a checkout) and the compiled-in features.

use std::process::Command;

fn main() {
    // An image build has no .git: `docker build --build-arg K3SCALE_COMMIT=...`.
    println!("cargo:rerun-if-env-changed=K3SCALE_COMMIT");
    let given = std::env::var("K3SCALE_COMMIT").ok().filter(|s| !s.is_empty());
    let commit = given
        .or_else(|| {
            Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "unknown".into());
    let features = if std::env::var_os("CARGO_FEATURE_AWS").is_some() {
        "aws"
    } else {
        "none"
    };
    println!("cargo:rustc-env=K3SCALE_COMMIT={commit}");
    println!("cargo:rustc-env=K3SCALE_FEATURES={features}");
    // A new commit re-stamps the build (HEAD moves, or the branch it names).
    for path in [
        "../../.git/HEAD",
        "../../.git/refs/heads",
        "../../.git/packed-refs",
    ] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
