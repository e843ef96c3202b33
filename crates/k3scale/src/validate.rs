//! `k3scale validate -c FILE`

use anyhow::Context;
use k3scale_core::config;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configuration file (YAML).
    #[arg(short, long)]
    config: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let name = args.config.display().to_string();
    let text = std::fs::read_to_string(&args.config).with_context(|| format!("cannot read {name}"))?;
    match config::load(&name, &text) {
        Ok(loaded) => {
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
