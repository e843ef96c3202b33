//! Cases of kube-scheduler's NodePorts and InterPodAffinity filters
//! (kubernetes/kubernetes pkg/scheduler/framework/plugins/nodeports/node_ports_test.go
//! `TestNodePorts`, and interpodaffinity/filtering_test.go
//! `TestRequiredAffinitySingleNode`), written again from their inputs and
//! expected answers against the planner's `check_pod_predicates`. Each row
//! names the upstream case it follows.

use k3scale_core::model::{
    HostPort, LabelSelector, Labels, NodeSelectorRequirement, PodAffinityTerm, SelectorOperator,
    TermNamespaces,
};
use k3scale_core::scheduling::{Target, check_pod_predicates};
use k3scale_core::{Pod, Resources};
use std::sync::Arc;

fn labels(kv: &[(&str, &str)]) -> Labels {
    kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn port(ip: &str, protocol: &str, port: u16) -> HostPort {
    HostPort {
        port,
        protocol: protocol.into(),
        ip: ip.into(),
    }
}

fn with_ports(ports: &[HostPort]) -> Pod {
    let mut p = Pod::new("default", "p", Resources::pod(10, 1 << 20));
    p.host_ports = Arc::from(ports.to_vec());
    p
}

/// Whether `pod` fits a node with these labels running `existing`.
fn fits_alone(pod: &Pod, node_labels: &Labels, existing: &[&Pod]) -> bool {
    let targets = [Target {
        name: Some("node1"),
        labels: node_labels,
        taints: &[],
        free: Resources::new(10_000, 10 << 30, 110),
        extended: Default::default(),
        pods: existing.to_vec(),
    }];
    check_pod_predicates(pod, 0, &targets).is_ok()
}

#[test]
fn kube_scheduler_node_ports_cases() {
    let cases: Vec<(&str, Vec<HostPort>, Vec<HostPort>, bool)> = vec![
        ("nothing running", vec![], vec![], true),
        (
            "other port",
            vec![port("127.0.0.1", "UDP", 8080)],
            vec![port("127.0.0.1", "UDP", 9090)],
            true,
        ),
        (
            "same udp port",
            vec![port("127.0.0.1", "UDP", 8080)],
            vec![port("127.0.0.1", "UDP", 8080)],
            false,
        ),
        (
            "same tcp port",
            vec![port("127.0.0.1", "TCP", 8080)],
            vec![port("127.0.0.1", "TCP", 8080)],
            false,
        ),
        (
            "different host ip",
            vec![port("127.0.0.1", "TCP", 8080)],
            vec![port("127.0.0.2", "TCP", 8080)],
            true,
        ),
        (
            "different protocol",
            vec![port("127.0.0.1", "UDP", 8080)],
            vec![port("127.0.0.1", "TCP", 8080)],
            true,
        ),
        (
            "second udp port conflict",
            vec![port("127.0.0.1", "UDP", 8000), port("127.0.0.1", "UDP", 8080)],
            vec![port("127.0.0.1", "UDP", 8080)],
            false,
        ),
        (
            "first tcp port conflict",
            vec![port("127.0.0.1", "TCP", 8001), port("127.0.0.1", "UDP", 8080)],
            vec![port("127.0.0.1", "TCP", 8001), port("127.0.0.1", "UDP", 8081)],
            false,
        ),
        (
            "first tcp port conflict due to 0.0.0.0 hostIP",
            vec![port("0.0.0.0", "TCP", 8001)],
            vec![port("127.0.0.1", "TCP", 8001)],
            false,
        ),
        (
            "TCP hostPort conflict due to 0.0.0.0 hostIP",
            vec![port("10.0.10.10", "TCP", 8001), port("0.0.0.0", "TCP", 8001)],
            vec![port("127.0.0.1", "TCP", 8001)],
            false,
        ),
        (
            "second tcp port conflict to 0.0.0.0 hostIP",
            vec![port("127.0.0.1", "TCP", 8001)],
            vec![port("0.0.0.0", "TCP", 8001)],
            false,
        ),
        (
            "second different protocol",
            vec![port("127.0.0.1", "UDP", 8001)],
            vec![port("0.0.0.0", "TCP", 8001)],
            true,
        ),
        (
            "UDP hostPort conflict due to 0.0.0.0 hostIP",
            vec![port("127.0.0.1", "UDP", 8001)],
            vec![port("0.0.0.0", "TCP", 8001), port("0.0.0.0", "UDP", 8001)],
            false,
        ),
        (
            "an empty hostIP is every address",
            vec![port("", "TCP", 80)],
            vec![port("10.0.0.1", "TCP", 80)],
            false,
        ),
    ];
    let mut failures = Vec::new();
    for (upstream, pod_ports, node_ports, fits) in cases {
        let existing = with_ports(&node_ports);
        let got = fits_alone(&with_ports(&pod_ports), &Labels::new(), &[&existing]);
        if got != fits {
            failures.push(format!("{upstream}: want fits={fits}, got {got}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

fn selector(key: &str, operator: SelectorOperator, values: &[&str]) -> LabelSelector {
    LabelSelector {
        match_labels: Labels::new(),
        match_expressions: vec![NodeSelectorRequirement {
            key: key.into(),
            operator,
            values: values.iter().map(|v| v.to_string()).collect(),
            field: false,
        }],
    }
}

fn term(sel: LabelSelector, key: &str) -> PodAffinityTerm {
    PodAffinityTerm {
        selector: Some(sel),
        namespaces: TermNamespaces::Listed(vec!["default".into()]),
        topology_key: key.into(),
    }
}

fn pod(name: &str, ns: &str, pod_labels: &[(&str, &str)]) -> Pod {
    let mut p = Pod::new(ns, name, Resources::pod(10, 1 << 20));
    p.labels = labels(pod_labels);
    p
}

#[test]
fn kube_scheduler_required_affinity_single_node_cases() {
    use SelectorOperator::*;
    let node_labels = labels(&[
        ("region", "r1"),
        ("zone", "z11"),
        ("kubernetes.io/hostname", "node1"),
    ]);
    let existing = pod("existing", "default", &[("security", "S1")]);
    struct Case {
        upstream: &'static str,
        pod: Pod,
        existing: Vec<Pod>,
        node_labels: Labels,
        fits: bool,
    }
    let mut cases = vec![Case {
        upstream: "A pod that has no required pod affinity scheduling rules can schedule onto a node with no existing pods",
        pod: pod("p", "default", &[]),
        existing: vec![],
        node_labels: node_labels.clone(),
        fits: true,
    }];
    let mut affine = |upstream: &'static str, t: PodAffinityTerm, fits: bool| {
        let mut p = pod("p", "default", &[]);
        p.pod_affinity = Arc::from([t]);
        cases.push(Case {
            upstream,
            pod: p,
            existing: vec![existing.clone()],
            node_labels: node_labels.clone(),
            fits,
        });
    };
    affine(
        "satisfies with requiredDuringSchedulingIgnoredDuringExecution in PodAffinity using In operator that matches the existing pod",
        term(selector("security", In, &["S1"]), "region"),
        true,
    );
    affine(
        "satisfies the pod with requiredDuringSchedulingIgnoredDuringExecution in PodAffinity using not in operator in labelSelector that matches the existing pod",
        term(
            selector("security", NotIn, &["securityscan3", "value3"]),
            "region",
        ),
        true,
    );
    let mut other_ns = term(selector("security", In, &["S1"]), "region");
    other_ns.namespaces = TermNamespaces::Listed(vec!["DiffNameSpace".into()]);
    affine(
        "Does not satisfy the PodAffinity with labelSelector because of diff Namespace",
        other_ns,
        false,
    );
    affine(
        "Doesn't satisfy the PodAffinity because of unmatching labelSelector with the existing pod",
        term(selector("security", In, &["antivirusscan", "value2"]), "region"),
        false,
    );
    affine(
        "A pod without a topology key on the node cannot satisfy its affinity",
        term(selector("security", In, &["S1"]), "rack"),
        false,
    );
    let anti = |upstream: &'static str, t: PodAffinityTerm, fits: bool| {
        let mut p = pod("p", "default", &[]);
        p.pod_anti_affinity = Arc::from([t]);
        Case {
            upstream,
            pod: p,
            existing: vec![existing.clone()],
            node_labels: node_labels.clone(),
            fits,
        }
    };
    cases.push(anti(
        "Doesn't satisfy the PodAntiAffinity because of the existing pod that its labelSelector matches",
        term(selector("security", In, &["S1"]), "zone"),
        false,
    ));
    cases.push(anti(
        "satisfies the PodAntiAffinity with existing pod when its labels do not match",
        term(selector("service", In, &["securityscan", "value2"]), "zone"),
        true,
    ));
    cases.push(anti(
        "A node without the topology key is in no domain: anti-affinity holds",
        term(selector("security", In, &["S1"]), "rack"),
        true,
    ));
    // Symmetry: the existing pod's anti-affinity keeps the incoming pod out.
    let mut guard = pod("guard", "default", &[("security", "S1")]);
    guard.pod_anti_affinity = Arc::from([term(selector("security", In, &["S2"]), "zone")]);
    cases.push(Case {
        upstream: "verify that PodAntiAffinity from existing pod is respected when pod has no AntiAffinity constraints. doesn't satisfy PodAntiAffinity symmetry with the existing pod",
        pod: pod("p", "default", &[("security", "S2")]),
        existing: vec![guard.clone()],
        node_labels: node_labels.clone(),
        fits: false,
    });
    cases.push(Case {
        upstream: "verify that PodAntiAffinity from existing pod is respected when pod has no AntiAffinity constraints. satisfy PodAntiAffinity symmetry with the existing pod",
        pod: pod("p", "default", &[("security", "S1")]),
        existing: vec![guard],
        node_labels: node_labels.clone(),
        fits: true,
    });
    // The first pod of a group that wants its own kind.
    let mut first = pod("p", "default", &[("app", "cache")]);
    first.pod_affinity = Arc::from([term(selector("app", In, &["cache"]), "zone")]);
    cases.push(Case {
        upstream: "a pod that matches its own affinity term may be the first of its group (no matching pod anywhere)",
        pod: first,
        existing: vec![],
        node_labels: node_labels.clone(),
        fits: true,
    });
    // A selector-less term selects nothing.
    let mut nothing = pod("p", "default", &[]);
    nothing.pod_affinity = Arc::from([PodAffinityTerm {
        selector: None,
        namespaces: TermNamespaces::All,
        topology_key: "zone".into(),
    }]);
    cases.push(Case {
        upstream: "an affinity term with a nil labelSelector matches no pod",
        pod: nothing,
        existing: vec![existing.clone()],
        node_labels: node_labels.clone(),
        fits: false,
    });
    // A namespace selector k3scale cannot evaluate is never taken as satisfied.
    let mut unknown = pod("p", "default", &[]);
    let mut t = term(selector("security", In, &["S1"]), "zone");
    t.namespaces = TermNamespaces::Unknown(vec![]);
    unknown.pod_anti_affinity = Arc::from([t.clone()]);
    let mut elsewhere = existing.clone();
    elsewhere.namespace = "other".into();
    cases.push(Case {
        upstream: "anti-affinity with an unevaluable namespaceSelector counts every namespace",
        pod: unknown,
        existing: vec![elsewhere.clone()],
        node_labels: node_labels.clone(),
        fits: false,
    });
    let mut unknown = pod("p", "default", &[]);
    unknown.pod_affinity = Arc::from([t]);
    cases.push(Case {
        upstream: "affinity with an unevaluable namespaceSelector counts none",
        pod: unknown,
        existing: vec![elsewhere],
        node_labels,
        fits: false,
    });

    let mut failures = Vec::new();
    for c in &cases {
        let existing: Vec<&Pod> = c.existing.iter().collect();
        let got = fits_alone(&c.pod, &c.node_labels, &existing);
        if got != c.fits {
            failures.push(format!("{}: want fits={}, got {got}", c.upstream, c.fits));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
