//! Configuration loading: defaults, and errors that name file, key, line and problem.

use k3scale_core::config::{DEFAULT_CONFIG, load, to_yaml};
use k3scale_core::policy::{Expander, PendingPods};
use std::time::Duration;

fn errors(yaml: &str) -> Vec<String> {
    match load("k3scale.yaml", yaml) {
        Ok(_) => panic!("expected errors for:\n{yaml}"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

const POOL: &str = "pools:
  - name: workers
    template: { cpu: \"2\", memory: 4Gi }
    provider:
      docker: { network: k3s, server_url: \"https://k3s:6443\", token_file: /run/secrets/t }
";

#[test]
fn embedded_default_is_the_smartscale_rules_with_scale_down_node_by_node() {
    let loaded = load("default.yaml", DEFAULT_CONFIG).unwrap();
    let p = &loaded.policy;
    assert_eq!(p.scale_up.cpu_above, 0.70);
    assert_eq!(p.scale_up.cpu_for, Duration::from_secs(180));
    assert_eq!(p.scale_up.memory_above, 0.75);
    assert_eq!(p.scale_up.pending_grace, Duration::ZERO);
    assert_eq!(p.scale_up.max_step, 2);
    assert_eq!(p.scale_up.cooldown, Duration::from_secs(300));
    assert_eq!(p.scale_down.cpu_below, 0.30);
    assert_eq!(p.scale_down.cpu_for, Duration::from_secs(600));
    assert_eq!(p.scale_down.memory_below, 0.50);
    assert_eq!(p.scale_down.max_step, 1);
    // Tuned in the simulator (docs/simulator.md), and the same as a config
    // that says nothing about scale-down.
    assert!(!p.scale_down.cluster_gate);
    assert_eq!(p.scale_down.unneeded_time, Duration::from_secs(480));
    assert_eq!(p.scale_down.delay_after_scale_up, Duration::from_secs(300));
    assert_eq!(p.scale_down.cooldown, Duration::from_secs(120));
    assert_eq!(p.scale_down, k3scale_core::policy::ScaleDownRules::default());
    assert_eq!(p.expander, Expander::LeastWaste);
    assert_eq!((p.pools[0].min, p.pools[0].max), (2, 10));
    assert_eq!(p.pools[0].template.allocatable.cpu_milli, 2000);
    assert_eq!(p.pools[0].template.allocatable.memory_bytes, 4 << 30);
    assert_eq!(
        p.pools[0]
            .template
            .labels
            .get("k3scale.io/pool")
            .map(String::as_str),
        Some("workers")
    );
    assert_eq!(loaded.interval, Duration::from_secs(10));
}

#[test]
fn minimal_config_gets_defaults_and_round_trips() {
    let loaded = load("min.yaml", POOL).unwrap();
    assert_eq!(loaded.policy.scale_up.pending_pods, PendingPods::BinPack);
    assert_eq!(loaded.policy.pools[0].template.boot_time, Duration::from_secs(60));
    let printed = to_yaml(&loaded.config);
    assert!(printed.contains("cpu_above: 0.7"), "{printed}");
    let again = load("printed.yaml", &printed).unwrap();
    assert_eq!(again.config, loaded.config);
}

#[test]
fn unknown_key_names_file_path_and_line() {
    let yaml = format!("policy:\n  scale_up:\n    cpu_abov: 0.8\n{POOL}");
    let e = errors(&yaml);
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("k3scale.yaml:3: policy.scale_up.cpu_abov: unknown field `cpu_abov`"),
        "{}",
        e[0]
    );
}

#[test]
fn semantic_errors_are_all_reported_with_paths_and_lines() {
    let yaml = "cluster: home
policy:
  scale_up:
    cooldown: -5m
    cpu_for: soon
  scale_down:
    cpu_below: 0.9
pools:
  - name: workers
    min: 5
    max: 3
    template: { cpu: \"2\", memory: 4Gx }
    provider:
      docker: { network: k3s, server_url: \"http://k3s:6443\" }
  - name: workers
    template: { cpu: \"0\", memory: 1Gi, boot_time: 45s }
    provider:
      exec: { create: ./create.sh, delete: \"\", list: ./list.sh }
";
    let e = errors(yaml);
    let expect = [
        "k3scale.yaml:4: policy.scale_up.cooldown: negative duration \"-5m\"",
        "k3scale.yaml:5: policy.scale_up.cpu_for: invalid duration \"soon\"",
        "k3scale.yaml:7: policy.scale_down.cpu_below: 0.9 must be below policy.scale_up.cpu_above (0.7)",
        "k3scale.yaml:10: pools[0].min: min (5) is greater than max (3)",
        "k3scale.yaml:12: pools[0].template.memory: invalid quantity \"4Gx\"",
        "k3scale.yaml:14: pools[0].provider.docker.server_url: \"http://k3s:6443\" must start with https://",
        "k3scale.yaml:14: pools[0].provider.docker: token is required: set token_file or token_env",
        "k3scale.yaml:15: pools[1].name: duplicate pool name \"workers\"",
        "k3scale.yaml:16: pools[1].template.cpu: must be greater than zero",
        "k3scale.yaml:18: pools[1].provider.exec.delete: must not be empty",
    ];
    for want in expect {
        assert!(
            e.iter().any(|got| got.starts_with(want)),
            "missing {want:?} in:\n{}",
            e.join("\n")
        );
    }
    assert_eq!(e.len(), expect.len(), "{}", e.join("\n"));
}

#[test]
fn unknown_provider_is_an_error() {
    let yaml = "pools:\n  - name: w\n    template: { cpu: \"1\", memory: 1Gi }\n    provider:\n      gce: { zone: x }\n";
    let e = errors(yaml);
    assert!(
        e[0].contains("pools[0].provider") && e[0].contains("unknown variant `gce`"),
        "{}",
        e[0]
    );
    assert!(
        e[0].contains("docker")
            && e[0].contains("aws_ec2")
            && e[0].contains("aws_asg")
            && e[0].contains("exec"),
        "{}",
        e[0]
    );
}

#[test]
fn bad_enum_and_type_errors_name_the_key() {
    let e = errors(&format!("policy:\n  expander: cheapest\n{POOL}"));
    assert!(
        e[0].starts_with("k3scale.yaml:2: policy.expander:") && e[0].contains("cheapest"),
        "{}",
        e[0]
    );
    let e = errors(&format!("{POOL}    max: ten\n"));
    assert!(e[0].contains("pools[0].max"), "{}", e[0]);
}

#[test]
fn secrets_are_only_read_from_files_or_env() {
    // A literal token is not a known key: it cannot be written into the config.
    let yaml = POOL.replace("token_file: /run/secrets/t", "token: K10abc::server:s3cret");
    let e = errors(&yaml);
    assert!(e[0].contains("unknown field `token`"), "{}", e[0]);
    assert!(
        !e.join("\n").contains("s3cret"),
        "secret echoed: {}",
        e.join("\n")
    );
    let e = errors(&format!("{POOL}notify:\n  slack: {{}}\n"));
    assert!(e[0].contains("notify.slack: url is required"), "{}", e[0]);
}

#[test]
fn missing_pools_and_bad_thresholds() {
    let e = errors("policy:\n  scale_up:\n    cpu_above: 1.5\n    max_step: 0\n");
    assert!(
        e.iter()
            .any(|m| m.contains("policy.scale_up.cpu_above: 1.5 is not a utilization")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|m| m.contains("policy.scale_up.max_step: must be at least 1")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|m| m.ends_with("pools: at least one pool is required")),
        "{e:?}"
    );
}

#[test]
fn custom_rules_are_checked() {
    let yaml = format!(
        "metrics:\n  custom:\n    - name: rps\n      query: sum(rate(x[1m]))\n      scale_up_above: 800\n      for: 1m\n    - name: Bad-Name\n      query: \"\"\n{POOL}"
    );
    let e = errors(&yaml);
    assert!(
        e.iter()
            .any(|m| m.starts_with("k3scale.yaml:7: metrics.custom[1].name")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|m| m.contains("metrics.custom[1].query: must not be empty")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|m| m.contains("metrics.custom[1]: set scale_up_above")),
        "{e:?}"
    );
    let ok = load("k.yaml", &format!("metrics:\n  custom:\n    - name: rps\n      query: q\n      scale_up_above: 800\n      for: 2m\n{POOL}")).unwrap();
    assert_eq!(ok.policy.custom[0].window, Duration::from_secs(120));
}

#[test]
fn yaml_syntax_error_has_a_line() {
    let e = errors("pools:\n  - name: [unclosed\n");
    assert!(e[0].starts_with("k3scale.yaml:"), "{}", e[0]);
}

#[test]
fn missing_keys_name_the_mapping_they_are_missing_from() {
    let e = errors("pools:\n  - name: w\n    provider: { exec: { create: c, delete: d, list: l } }\n");
    assert_eq!(e, vec!["k3scale.yaml:3: pools[0]: missing field `template`"]);
    let e = errors(
        "pools:\n  - name: w\n    template: {}\n    provider: { exec: { create: c, delete: d, list: l } }\n",
    );
    assert!(
        e[0].starts_with("k3scale.yaml:3: pools[0].template: missing field `cpu`"),
        "{}",
        e[0]
    );
}

#[test]
fn provider_must_be_exactly_one() {
    for provider in [
        "{}",
        "{ exec: { create: c, delete: d, list: l }, docker: { network: x } }",
    ] {
        let e = errors(&format!(
            "pools:\n  - name: w\n    template: {{ cpu: \"2\", memory: 4Gi }}\n    provider: {provider}\n"
        ));
        assert_eq!(
            e,
            vec![
                "k3scale.yaml:4: pools[0].provider: set exactly one provider: docker, aws_ec2, aws_asg or exec"
            ],
            "{provider}"
        );
    }
}

#[test]
fn custom_rules_need_prometheus() {
    let yaml = format!(
        "metrics:\n  source: metrics-server\n  custom:\n    - {{ name: rps, query: \"sum(rate(x[1m]))\", scale_up_above: 800 }}\n{POOL}"
    );
    let errs = errors(&yaml);
    assert!(
        errs.iter()
            .any(|e| e.starts_with("k3scale.yaml:3: metrics.custom: custom PromQL rules need")),
        "{errs:?}"
    );
}

#[test]
fn drain_timeout_startup_taints_and_leader_election_are_settings() {
    let yaml = format!(
        "policy:\n  startup_taints: [node.cilium.io/agent-not-ready]\n  scale_down: {{ drain_timeout: 5m }}\nleader_election: {{ namespace: ops, lease_duration: 20s, renew_deadline: 12s, retry_period: 3s }}\n{POOL}    drain_timeout: 30s\n"
    );
    let loaded = load("k3scale.yaml", &yaml).unwrap();
    let p = &loaded.policy;
    assert_eq!(
        p.startup_taints,
        vec!["node.cilium.io/agent-not-ready".to_string()]
    );
    assert_eq!(p.scale_down.drain_timeout, Duration::from_secs(300));
    assert_eq!(
        p.drain_timeout("workers"),
        Duration::from_secs(30),
        "the pool's override"
    );
    assert_eq!(p.drain_timeout("other"), Duration::from_secs(300));
    assert_eq!(loaded.election.lease_duration, Duration::from_secs(20));
    assert_eq!(loaded.config.leader_election.namespace.as_deref(), Some("ops"));

    let defaults = load("min.yaml", POOL).unwrap();
    assert_eq!(defaults.policy.scale_down.drain_timeout, Duration::from_secs(120));
    assert_eq!(defaults.election, k3scale_core::lease::ElectionConfig::default());

    let errs = errors(&format!(
        "policy:\n  scale_down: {{ drain_timeout: 0s }}\nleader_election: {{ namespace: Bad_NS, renew_deadline: 20s }}\n{POOL}    drain_timeout: soon\n"
    ));
    let all = errs.join("\n");
    assert!(
        all.contains("policy.scale_down.drain_timeout") && all.contains("greater than zero"),
        "{all}"
    );
    assert!(all.contains("pools[0].drain_timeout"), "{all}");
    assert!(all.contains("leader_election.namespace"), "{all}");
    assert!(
        all.contains("renew deadline (20s) must be shorter than the lease duration (15s)"),
        "{all}"
    );
}

#[test]
fn unready_node_removal_is_on_by_default_after_twenty_minutes() {
    let defaults = load("min.yaml", POOL).unwrap().policy.scale_down;
    assert!(defaults.unready_enabled);
    assert_eq!(defaults.unready_time, Duration::from_secs(1200));
    let set = load(
        "k3scale.yaml",
        &format!("policy:\n  scale_down: {{ unready_enabled: false, unready_time: 45m }}\n{POOL}"),
    )
    .unwrap()
    .policy
    .scale_down;
    assert!(!set.unready_enabled);
    assert_eq!(set.unready_time, Duration::from_secs(2700));
    let all = errors(&format!("policy:\n  scale_down: {{ unready_time: 0s }}\n{POOL}")).join("\n");
    assert!(
        all.contains("policy.scale_down.unready_time") && all.contains("greater than zero"),
        "{all}"
    );
}

#[test]
fn cluster_limits_and_cluster_autoscaler_settings() {
    let yaml = format!(
        "limits: {{ max_nodes: 12, max_cpu: \"48\", max_memory: 96Gi }}\npolicy:\n  expendable_pods_priority_cutoff: -5\n  balance_similar_pools: true\n  scale_up: {{ trust_scheduler_after: 1m }}\n  scale_down: {{ skip_nodes_with_system_pods: true, ignore_daemonsets_utilization: true }}\n{POOL}    scale_down_utilization_below: 0.6\n"
    );
    let p = load("k3scale.yaml", &yaml).unwrap().policy;
    assert_eq!(p.limits.max_nodes, Some(12));
    assert_eq!(p.limits.max_cpu_milli, Some(48_000));
    assert_eq!(p.limits.max_memory_bytes, Some(96 << 30));
    assert_eq!(p.expendable_pods_priority_cutoff, -5);
    assert!(p.balance_similar_pools);
    assert_eq!(p.scale_up.trust_scheduler_after, Duration::from_secs(60));
    assert!(p.scale_down.skip_nodes_with_system_pods && p.scale_down.ignore_daemonsets_utilization);
    assert_eq!(p.utilization_below("workers"), 0.6);
    assert_eq!(p.utilization_below("other"), 0.5);

    let d = load("min.yaml", POOL).unwrap().policy;
    assert_eq!(d.limits, k3scale_core::policy::ClusterLimits::default());
    assert_eq!(d.expendable_pods_priority_cutoff, -10);
    assert!(!d.balance_similar_pools);
    assert_eq!(d.scale_up.trust_scheduler_after, Duration::from_secs(30));
    assert!(!d.scale_down.skip_nodes_with_system_pods);

    let all = errors(&format!(
        "limits: {{ max_nodes: 0, max_cpu: lots }}\n{POOL}    scale_down_utilization_below: 1.5\n"
    ))
    .join("\n");
    assert!(all.contains("limits.max_nodes: must be at least 1"), "{all}");
    assert!(all.contains("limits.max_cpu"), "{all}");
    assert!(all.contains("pools[0].scale_down_utilization_below"), "{all}");
}

#[test]
fn a_prometheus_url_with_a_password_is_refused_without_echoing_it() {
    let yaml = format!("metrics:\n  prometheus: {{ url: \"http://admin:hunter2@prom:9090\" }}\n{POOL}");
    let all = errors(&yaml).join("\n");
    assert!(all.contains("metrics.prometheus.url: holds credentials"), "{all}");
    assert!(!all.contains("hunter2"), "{all}");
    // An `@` in the path is not a credential.
    let yaml = format!("metrics:\n  prometheus: {{ url: \"http://prom:9090/a@b\" }}\n{POOL}");
    assert!(load("k3scale.yaml", &yaml).is_ok());
}

#[test]
fn pool_templates_offer_extended_resources() {
    let gpu = POOL.replace(
        "template: { cpu: \"2\", memory: 4Gi }",
        "template: { cpu: \"2\", memory: 4Gi, extended_resources: { nvidia.com/gpu: 2 } }",
    );
    let p = load("k3scale.yaml", &gpu).unwrap().policy;
    assert_eq!(p.pools[0].template.extended.get("nvidia.com/gpu"), Some(&2));
    assert!(
        load("min.yaml", POOL).unwrap().policy.pools[0]
            .template
            .extended
            .is_empty()
    );

    let bad = POOL.replace(
        "template: { cpu: \"2\", memory: 4Gi }",
        "template: { cpu: \"2\", memory: 4Gi, extended_resources: { hugepages-2Mi: 4, kubernetes.io/x: 1 } }",
    );
    let all = errors(&bad).join("\n");
    assert!(
        all.contains("pools[0].template.extended_resources.hugepages-2Mi: is not an extended resource"),
        "{all}"
    );
    assert!(all.contains("extended_resources.kubernetes.io/x"), "{all}");
}

#[test]
fn every_error_is_reported_in_one_pass_in_plain_words() {
    // Type errors, unknown keys, a missing key and checks of what is left,
    // in two pools and the policy: all at once, by line.
    let e = errors(
        "pools:
  - name: a
    min: x
    bogus: 1
    template: { cpu: \"2\", memory: 4Gi, gpus: 1 }
    provider: { exec: { create: c, delete: d, list: l } }
  - name: b
    provider: { exec: { create: c, delete: d, list: l } }
policy:
  scale_up: { cpu_above: 2, cooldown: soon, typo: 1 }
  scale_down: { cpu_below: x }
",
    );
    let want = [
        "k3scale.yaml:3: pools[0].min: expected a whole number, 0 or more",
        "k3scale.yaml:4: pools[0].bogus: unknown field `bogus`",
        "k3scale.yaml:5: pools[0].template.gpus: unknown field `gpus`",
        "k3scale.yaml:8: pools[1]: missing field `template`",
        "k3scale.yaml:10: policy.scale_up.typo: unknown field `typo`",
        "k3scale.yaml:11: policy.scale_down.cpu_below: expected a number",
    ];
    assert_eq!(e.len(), want.len(), "{e:#?}");
    for (got, want) in e.iter().zip(want) {
        assert!(got.starts_with(want), "{got:?} vs {want:?}");
    }

    // With no list item taken out, the checks of the rest speak too; a
    // value taken out does not make its neighbours look wrong.
    let e = errors(&format!(
        "policy:\n  scale_up: {{ cpu_above: 2, cooldown: soon, typo: 1 }}\n  scale_down: {{ cpu_below: x, cpu_for: 10m }}\n{POOL}"
    ));
    let want = [
        "k3scale.yaml:2: policy.scale_up.typo: unknown field `typo`",
        "k3scale.yaml:2: policy.scale_up.cpu_above: 2 is not a utilization",
        "k3scale.yaml:2: policy.scale_up.cooldown: invalid duration \"soon\"",
        "k3scale.yaml:3: policy.scale_down.cpu_below: expected a number",
    ];
    assert_eq!(e.len(), want.len(), "{e:#?}");
    for want in want {
        assert!(e.iter().any(|got| got.starts_with(want)), "{want:?} in {e:#?}");
    }
}

#[test]
fn whole_document_problems_are_said_plainly() {
    let cases = [
        (
            "cluster: a\ncluster: b\n",
            "k3scale.yaml:2: cluster: key `cluster` appears more than once in this mapping",
        ),
        (
            "cluster: a\n---\ncluster: b\n",
            "more than one YAML document (`---`)",
        ),
        ("pools: 3\n", "k3scale.yaml:1: pools: expected a list"),
        (
            "cluster: [a\n",
            "k3scale.yaml:1: cluster: not valid YAML: unclosed bracket",
        ),
        (
            "pools:\n  - name:\n",
            "k3scale.yaml:2: pools[0].name: has no value",
        ),
    ];
    for (yaml, want) in cases {
        let e = errors(yaml);
        assert!(
            e.iter().any(|got| got.contains(want)),
            "{yaml:?}: {want:?} not in {e:#?}"
        );
        let text = e.join("\n");
        for jargon in [
            "DuplicateKeyPolicy",
            "from_str_multiple",
            "Option<",
            "invalid u32",
            "budget breached",
            "{ ",
        ] {
            assert!(!text.contains(jargon), "{yaml:?}: {text}");
        }
    }
    // Far too many nodes: one plain error, not a Debug dump.
    let labels: Vec<String> = (0..130_000).map(|i| format!("k{i}: v")).collect();
    let huge = format!("pools:\n  - name: a\n    labels: {{{}}}\n", labels.join(","));
    assert_eq!(
        errors(&huge),
        vec!["k3scale.yaml:3: the document is too large to be a configuration"]
    );
}

#[test]
fn headroom_is_pods_worth_of_requests_and_must_fit_a_node() {
    let p = load(
        "k3scale.yaml",
        &format!("{POOL}    headroom: {{ pods: 3, cpu: 250m, memory: 256Mi }}\n"),
    )
    .unwrap()
    .policy;
    let h = p.pools[0].headroom.unwrap();
    assert_eq!(
        (h.pods, h.requests.cpu_milli, h.requests.memory_bytes),
        (3, 250, 256 << 20)
    );
    let one = load(
        "k3scale.yaml",
        &format!("{POOL}    headroom: {{ cpu: \"1\", memory: 1Gi }}\n"),
    )
    .unwrap()
    .policy;
    assert_eq!(
        one.pools[0].headroom.unwrap().pods,
        1,
        "one pod's worth by default"
    );
    assert_eq!(load("min.yaml", POOL).unwrap().policy.pools[0].headroom, None);

    let all = errors(&format!(
        "{POOL}    headroom: {{ pods: 0, cpu: lots, memory: 0Mi }}\n"
    ))
    .join("\n");
    assert!(
        all.contains("pools[0].headroom.pods: must be at least 1"),
        "{all}"
    );
    assert!(all.contains("pools[0].headroom.cpu"), "{all}");
    assert!(
        all.contains("pools[0].headroom.memory: must be greater than zero"),
        "{all}"
    );
    let big = errors(&format!("{POOL}    headroom: {{ cpu: \"3\", memory: 1Gi }}\n")).join("\n");
    assert!(
        big.contains("pools[0].headroom: one pod of 3 CPU / 1Gi memory does not fit a node of the pool"),
        "{big}"
    );
    let typo = errors(&format!(
        "{POOL}    headroom: {{ cpu: \"1\", memory: 1Gi, replicas: 2 }}\n"
    ))
    .join("\n");
    assert!(typo.contains("replicas"), "{typo}");
}

#[test]
fn predictive_is_off_unless_enabled_and_its_cap_is_checked() {
    assert_eq!(load("min.yaml", POOL).unwrap().policy.predictive, None);
    let on = load(
        "k3scale.yaml",
        &format!("policy:\n  predictive: {{ enabled: true, max_extra_nodes: 3 }}\n{POOL}"),
    )
    .unwrap()
    .policy;
    assert_eq!(on.predictive.map(|p| p.max_extra_nodes), Some(3));
    let zero = errors(&format!(
        "policy:\n  predictive: {{ enabled: true, max_extra_nodes: 0 }}\n{POOL}"
    ))
    .join("\n");
    assert!(
        zero.contains("policy.predictive.max_extra_nodes: must be at least 1"),
        "{zero}"
    );
}

#[test]
fn disruption_budgets_are_counts_or_percentages_with_reasons_and_windows() {
    let yaml = format!(
        "policy:
  disruption:
    budgets:
      - {{ nodes: \"10%\" }}
      - name: business-hours
        nodes: 0
        reasons: [underutilized, drifted]
        schedule: \"0 9 * * mon-fri\"
        duration: 8h
        timezone: Europe/Paris
{POOL}    disruption:
      budgets: [{{ nodes: \"1\" }}]
"
    );
    let loaded = load("k3scale.yaml", &yaml).unwrap();
    let cluster = &loaded.policy.disruption;
    assert_eq!(cluster.len(), 2);
    // Unnamed: named by where it is written.
    assert_eq!(cluster[0].name, "policy.disruption.budgets[0]");
    assert_eq!(cluster[0].nodes.to_string(), "10%");
    assert_eq!(cluster[1].name, "business-hours");
    let w = cluster[1].window.as_ref().unwrap();
    assert_eq!(
        (w.duration, w.timezone.as_str()),
        (Duration::from_secs(8 * 3600), "Europe/Paris")
    );
    assert_eq!(
        loaded.policy.pools[0].disruption[0].name,
        "pools[0].disruption.budgets[0]"
    );
    // It round-trips through the effective configuration.
    let again = load("again.yaml", &to_yaml(&loaded.config)).unwrap();
    assert_eq!(again.policy.disruption, loaded.policy.disruption);

    let bad = errors(&format!(
        "policy:
  disruption:
    budgets:
      - {{ nodes: \"150%\" }}
      - {{ nodes: \"some\" }}
      - {{ nodes: 1, schedule: \"0 9 * *\", duration: 1h }}
      - {{ nodes: 1, schedule: \"0 9 * * *\" }}
      - {{ nodes: 1, duration: 1h }}
      - {{ nodes: 1, schedule: \"@daily\", duration: 1h, timezone: Nowhere/City }}
      - {{ nodes: 1, timezone: UTC }}
{POOL}"
    ))
    .join("\n");
    for want in [
        "policy.disruption.budgets[0].nodes: \"150%\" is more than 100%",
        "policy.disruption.budgets[1].nodes: \"some\" is neither a number of nodes",
        "policy.disruption.budgets[2].schedule: \"0 9 * *\" has 4 fields",
        "policy.disruption.budgets[3].duration: required with a schedule",
        "policy.disruption.budgets[4].schedule: required with a duration",
        "policy.disruption.budgets[5].timezone: timezone \"Nowhere/City\"",
        "policy.disruption.budgets[6].timezone: is only used with a schedule",
    ] {
        assert!(bad.contains(want), "missing {want:?} in\n{bad}");
    }
    let reason = errors(&format!(
        "policy:\n  disruption:\n    budgets: [{{ nodes: 1, reasons: [bored] }}]\n{POOL}"
    ))
    .join("\n");
    assert!(
        reason.contains("policy.disruption.budgets[0].reasons") && reason.contains("bored"),
        "{reason}"
    );
}
