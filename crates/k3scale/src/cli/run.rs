//! `k3scale run -c FILE`: the daemon, with its HTTP server.

use crate::cli::once::{ConfigArgs, identity};
use anyhow::Context;
use k3scale::daemon::Daemon;
use k3scale::kube::lease::{LeaseLock, pod_namespace};
use k3scale::kube::review::Reviewer;
use k3scale::server::{Shared, guarded_router};
use k3scale::wiring::controller;
use k3scale_core::config::ServerAuth;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArgs,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let loaded = args.config.load()?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let me = identity();
        // A port already taken is said before anything else is tried.
        let listen = &loaded.config.server.listen;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("server.listen: cannot listen on {listen}"))?;
        let (mut controller, store) = controller(&loaded, &me, false).await?;
        if let Some(prom) = crate::cli::once::prometheus_for_backfill(&loaded)? {
            crate::cli::once::backfill_demand(&mut controller, &prom).await;
        }
        let cluster = controller.cluster();
        let shared = Shared::new(store.clone(), cluster.clone(), &me);
        eprintln!("k3scale {me}: serving http://{}", listener.local_addr()?);
        let reviewer = (loaded.config.server.auth == ServerAuth::Kubernetes)
            .then(|| std::sync::Arc::new(Reviewer::new(cluster.client().clone())));
        let app = guarded_router(shared.clone(), reviewer)
            .into_make_service_with_connect_info::<std::net::SocketAddr>();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "HTTP server stopped");
            }
        });
        let namespace = k3scale::kube::lease::namespace(&loaded.config, pod_namespace());
        let lease_name = format!("k3scale-{}", loaded.config.cluster);
        eprintln!("k3scale {me}: electing a leader on Lease {namespace}/{lease_name}");
        let lease = LeaseLock::new(
            cluster.client().clone(),
            &namespace,
            &lease_name,
            &me,
            loaded.election.clone(),
        );
        let daemon = Daemon {
            controller,
            shared,
            store,
            identity: me,
            interval: loaded.interval,
            lease: Some(lease),
        };
        daemon.run(shutdown_signal()).await;
        Ok(ExitCode::SUCCESS)
    })
}

/// SIGTERM (Kubernetes stopping the pod) or Ctrl-C.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
