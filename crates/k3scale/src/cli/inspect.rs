//! `k3scale status` and `k3scale explain [NODE]`: the running daemon's
//! `/api/status`, as tables or JSON.

use anyhow::Context;
use k3scale::status::{NodeStatus, Status};
use k3scale::text::terminal_safe;
use std::fmt::Write as _;
use std::process::ExitCode;

/// How `status`, `explain` and `once` print their answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    #[default]
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The daemon's HTTP address (`http://` is assumed without a scheme).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    server: String,
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// A node: why it is or is not a scale-down candidate. Without it: the last decision.
    node: Option<String>,
    /// The daemon's HTTP address (`http://` is assumed without a scheme).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    server: String,
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// How long `status` and `explain` wait for the daemon's answer.
const ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The daemon's base URL: `host:port` means `http://host:port`.
fn base_url(server: &str) -> String {
    let server = server.trim_end_matches('/');
    if server.contains("://") {
        server.to_string()
    } else {
        format!("http://{server}")
    }
}

fn fetch(server: &str) -> anyhow::Result<(Status, serde_json::Value)> {
    let url = format!("{}/api/status", base_url(server));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let text = rt.block_on(async {
        let client = reqwest::Client::builder().timeout(ANSWER_TIMEOUT).build()?;
        let resp = client.get(&url).send().await.map_err(|e| {
            let why = if e.is_timeout() {
                format!("no answer within {}s", ANSWER_TIMEOUT.as_secs())
            } else {
                "connection failed".to_string()
            };
            anyhow::anyhow!("cannot reach the k3scale daemon at {url}: {why} (is `k3scale run` up? --server)")
        })?;
        let status = resp.status();
        let text = resp.text().await?;
        anyhow::ensure!(
            status.is_success(),
            "{url} answered HTTP {}: {text}",
            status.as_u16()
        );
        Ok::<_, anyhow::Error>(text)
    })?;
    let raw: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{url}: not JSON"))?;
    let status: Status =
        serde_json::from_value(raw.clone()).with_context(|| format!("{url}: unexpected shape"))?;
    Ok((status, raw))
}

fn state(n: &NodeStatus) -> &'static str {
    match (n.ready, n.cordoned) {
        (_, true) => "cordoned",
        _ if n.starting.is_some() => "starting",
        (true, false) => "ready",
        (false, false) => "not-ready",
    }
}

fn render_status(s: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} ({}{})",
        s.identity,
        if s.leader { "leader" } else { "standby" },
        if s.dry_run { ", dry run" } else { "" }
    );
    match (&s.lease_holder, s.leader) {
        (Some(holder), false) if *holder != s.identity => {
            let _ = writeln!(out, "leader: {holder}");
        }
        _ => {}
    }
    if let Some(e) = &s.lease_error {
        let _ = writeln!(out, "lease rounds failing: {e}");
    }
    if let Some(e) = &s.last_error {
        let _ = writeln!(out, "last reconcile failed: {e}");
    }
    if let Some(e) = &s.metrics_error {
        let _ = writeln!(out, "metrics unavailable: {e}");
    }
    let _ = writeln!(
        out,
        "\n{:<16} {:>5} {:>9} {:>4} {:>4}",
        "POOL", "NODES", "LAUNCHING", "MIN", "MAX"
    );
    for p in &s.pools {
        let held = match p.held {
            Some(k3scale_core::lifecycle::HoldCause::Failed) => "  FAILED (k3scale pool reset)",
            Some(_) => "  held",
            None => "",
        };
        let _ = writeln!(
            out,
            "{:<16} {:>5} {:>9} {:>4} {:>4}{held}",
            p.name, p.nodes, p.launching, p.min, p.max
        );
    }
    let _ = writeln!(
        out,
        "\n{:<28} {:<12} {:<10} {:>9} {:>5}  WHY IT STAYS",
        "NODE", "POOL", "STATE", "REQUESTED", "PODS"
    );
    for n in &s.nodes {
        // Expired or drifted nodes are marked whatever their phrase says,
        // and so are those expiring within a day.
        let due = match (n.replace.as_deref(), n.expires_in_s) {
            (Some(r), _) => format!("[{r}] "),
            (None, Some(s)) if s < 86_400 => format!("[expires in {}h{:02}m] ", s / 3600, s % 3600 / 60),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "{:<28} {:<12} {:<10} {:>8.0}% {:>5}  {due}{}",
            n.name,
            n.pool.as_deref().unwrap_or("-"),
            state(n),
            n.requested * 100.0,
            n.pods,
            n.why
        );
    }
    let _ = writeln!(
        out,
        "\nunschedulable pods: {} · cooldowns: up {}s, down {}s",
        s.unschedulable_pods, s.cooldown_up_s, s.cooldown_down_s
    );
    out
}

fn render_explain(s: &Status, node: Option<&str>) -> anyhow::Result<String> {
    let mut out = String::new();
    match node {
        None => {
            let _ = writeln!(out, "last decision:");
            for r in &s.reasons {
                let _ = writeln!(out, "  - {r}");
            }
        }
        Some(name) => {
            let n = s
                .nodes
                .iter()
                .find(|n| n.name == name)
                .with_context(|| format!("no node {name} in the daemon's view"))?;
            let _ = writeln!(
                out,
                "{name}: {}, pool {}, {:.0}% requested, {} pods",
                state(n),
                n.pool.as_deref().unwrap_or("(not managed)"),
                n.requested * 100.0,
                n.pods
            );
            if n.pool.is_none() {
                let _ = writeln!(
                    out,
                    "  not managed by k3scale: its capacity is used, it is never removed"
                );
            } else if s.draining.iter().any(|d| d == name) {
                let _ = writeln!(
                    out,
                    "  being drained: cordoned, its pods are being evicted; then its machine and Node are deleted"
                );
            } else if let Some(taint) = &n.starting {
                let _ = writeln!(
                    out,
                    "  still starting: it carries the startup taint {taint}, so it counts as launching"
                );
            } else if n.removable {
                let _ = writeln!(out, "  a scale-down candidate: its pods fit elsewhere");
            } else if n.kept_because.is_empty() {
                let general: Vec<&String> = s.reasons.iter().filter(|r| !r.starts_with("node ")).collect();
                if general.is_empty() {
                    let _ = writeln!(out, "  not considered for removal in the last decision");
                } else {
                    let _ = writeln!(out, "  not considered for removal in the last decision:");
                    for r in general {
                        let _ = writeln!(out, "  - {r}");
                    }
                }
            } else {
                let _ = writeln!(out, "  kept because:");
                for why in &n.kept_because {
                    let _ = writeln!(out, "  - {why}");
                }
            }
        }
    }
    Ok(out)
}

pub fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let (status, raw) = fetch(&args.server)?;
    if args.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&raw)?);
    } else {
        print!("{}", terminal_safe(&render_status(&status)));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn explain(args: ExplainArgs) -> anyhow::Result<ExitCode> {
    let (status, raw) = fetch(&args.server)?;
    if args.output == Output::Json {
        let value = match &args.node {
            Some(name) => serde_json::to_value(
                status
                    .nodes
                    .iter()
                    .find(|n| &n.name == name)
                    .with_context(|| format!("no node {name} in the daemon's view"))?,
            )?,
            None => raw["decision"].clone(),
        };
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!(
            "{}",
            terminal_safe(&render_explain(&status, args.node.as_deref())?)
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k3scale::status::NodeStatus;

    fn status(node: NodeStatus) -> Status {
        Status {
            identity: "k3scale-a".into(),
            leader: true,
            nodes: vec![node],
            ..Status::default()
        }
    }

    #[test]
    fn status_marks_expired_and_drifted_nodes_and_says_why_each_stays() {
        let s = Status {
            nodes: vec![
                NodeStatus {
                    name: "w1".into(),
                    pool: Some("workers".into()),
                    ready: true,
                    why: "drifted: launching its replacement first".into(),
                    replace: Some("drifted".into()),
                    ..Default::default()
                },
                NodeStatus {
                    name: "w2".into(),
                    pool: Some("workers".into()),
                    ready: true,
                    why: "unneeded: goes in 300 s if still so".into(),
                    expires_in_s: Some(5 * 3600 + 7 * 60),
                    ..Default::default()
                },
            ],
            ..Status::default()
        };
        let text = render_status(&s);
        assert!(text.contains("WHY IT STAYS"), "{text}");
        assert!(
            text.contains("[drifted] drifted: launching its replacement first"),
            "{text}"
        );
        assert!(
            text.contains("[expires in 5h07m] unneeded: goes in 300 s if still so"),
            "{text}"
        );
    }

    #[test]
    fn explain_says_why_a_draining_or_starting_node_is_not_a_candidate() {
        let draining = NodeStatus {
            name: "workers-a".into(),
            pool: Some("workers".into()),
            ready: true,
            cordoned: true,
            ..NodeStatus::default()
        };
        let mut s = status(draining);
        s.draining = vec!["workers-a".into()];
        let text = render_explain(&s, Some("workers-a")).unwrap_or_default();
        assert!(text.contains("being drained"), "{text}");
        assert!(!text.trim_end().ends_with(':'), "never an empty list: {text}");

        let starting = NodeStatus {
            name: "workers-b".into(),
            pool: Some("workers".into()),
            ready: true,
            starting: Some("node.kubernetes.io/not-ready".into()),
            ..NodeStatus::default()
        };
        let text = render_explain(&status(starting.clone()), Some("workers-b")).unwrap_or_default();
        assert!(
            text.contains("starting") && text.contains("node.kubernetes.io/not-ready"),
            "{text}"
        );

        // Nothing was said about it and no general reason either: a sentence, not a dangling list.
        let quiet = NodeStatus {
            starting: None,
            ..starting
        };
        let text = render_explain(&status(quiet), Some("workers-b")).unwrap_or_default();
        assert!(
            text.contains("not considered for removal in the last decision\n"),
            "{text}"
        );
    }

    #[test]
    fn a_server_without_a_scheme_is_http() {
        assert_eq!(base_url("127.0.0.1:8080"), "http://127.0.0.1:8080");
        assert_eq!(base_url("https://k3scale.local/"), "https://k3scale.local");
    }

    #[test]
    fn status_names_the_leader_on_a_standby_and_lease_errors() {
        let mut s = status(NodeStatus::default());
        s.leader = false;
        s.identity = "k3scale-b".into();
        s.lease_holder = Some("k3scale-a".into());
        let text = render_status(&s);
        assert!(
            text.contains("k3scale-b (standby)") && text.contains("leader: k3scale-a"),
            "{text}"
        );
        s.lease_error = Some("leases is forbidden".into());
        assert!(render_status(&s).contains("lease rounds failing: leases is forbidden"));
    }
}
