//! `k3scale validate -c FILE`

use k3scale_core::config;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configuration file (YAML); `-` reads it from standard input.
    #[arg(short, long)]
    config: PathBuf,
    /// Check the configuration only, not that its secret files (`*_file`)
    /// can be read here: for a configuration meant for another machine or
    /// a container.
    #[arg(long)]
    skip_secret_files: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (name, text) = crate::cli::once::read_config(&args.config)?;
    match config::load(&name, &text) {
        Ok(loaded) => {
            let unreadable = if args.skip_secret_files {
                Vec::new()
            } else {
                unreadable_secret_files(&loaded.config)
            };
            if !unreadable.is_empty() {
                for (key, path, why) in &unreadable {
                    eprintln!("{name}: {key}: cannot read {path}: {why}");
                }
                eprintln!(
                    "{name}: {} error(s) (--skip-secret-files checks the configuration only)",
                    unreadable.len()
                );
                return Ok(ExitCode::FAILURE);
            }
            print!("{}", config::to_yaml(&loaded.config));
            eprintln!("{name}: ok ({} pools)", loaded.policy.pools.len());
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("{name}: {} error(s)", errors.0.len());
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Every `*_file` setting whose file cannot be read here: (key, path, why).
/// Only the path is named, never what the file holds.
fn unreadable_secret_files(config: &config::Config) -> Vec<(String, String, String)> {
    let mut found = Vec::new();
    if let Ok(tree) = serde_json::to_value(config) {
        secret_files(&tree, String::new(), &mut found);
    }
    found
        .into_iter()
        .filter_map(|(key, path)| {
            let why = match std::fs::File::open(&path) {
                Ok(file) => match file.metadata() {
                    Ok(m) if m.is_file() => return None,
                    Ok(_) => "not a file".to_string(),
                    Err(e) => plain(&e),
                },
                Err(e) => plain(&e),
            };
            Some((key, path, why))
        })
        .collect()
}

fn plain(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        kind => kind.to_string(),
    }
}

fn secret_files(value: &serde_json::Value, at: String, found: &mut Vec<(String, String)>) {
    let join = |key: &str| {
        if at.is_empty() {
            key.to_string()
        } else {
            format!("{at}.{key}")
        }
    };
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match v {
                    serde_json::Value::String(path) if key.ends_with("_file") => {
                        found.push((join(key), path.clone()));
                    }
                    _ => secret_files(v, join(key), found),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                secret_files(v, format!("{at}[{i}]"), found);
            }
        }
        _ => {}
    }
}
