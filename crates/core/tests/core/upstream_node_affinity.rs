//! Cases of kube-scheduler's NodeAffinity filter
//! (kubernetes/kubernetes pkg/scheduler/framework/plugins/nodeaffinity/node_affinity_test.go,
//! `TestNodeAffinity`), written again from their inputs and expected
//! answers, against the planner's predicate `check_constraints`. Each row
//! names the upstream case it follows.

use k3scale_core::model::{Labels, NodeAffinity, NodeSelectorRequirement, SelectorOperator};
use k3scale_core::scheduling::check_constraints;
use k3scale_core::{Pod, Resources};

fn labels(kv: &[(&str, &str)]) -> Labels {
    kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn req(key: &str, operator: SelectorOperator, values: &[&str]) -> NodeSelectorRequirement {
    NodeSelectorRequirement {
        key: key.into(),
        operator,
        values: values.iter().map(|v| v.to_string()).collect(),
        field: false,
    }
}

fn field(operator: SelectorOperator, values: &[&str]) -> NodeSelectorRequirement {
    NodeSelectorRequirement {
        field: true,
        ..req("metadata.name", operator, values)
    }
}

struct Case {
    upstream: &'static str,
    node_selector: Labels,
    terms: Vec<Vec<NodeSelectorRequirement>>,
    node_name: &'static str,
    node_labels: Labels,
    fits: bool,
}

fn case(
    upstream: &'static str,
    terms: Vec<Vec<NodeSelectorRequirement>>,
    node_labels: Labels,
    fits: bool,
) -> Case {
    Case {
        upstream,
        node_selector: Labels::new(),
        terms,
        node_name: "node1",
        node_labels,
        fits,
    }
}

#[test]
fn kube_scheduler_node_affinity_filter_cases() {
    use SelectorOperator::*;
    let foo_bar = labels(&[("foo", "bar")]);
    let cases = vec![
        Case {
            upstream: "no selector",
            node_selector: Labels::new(),
            terms: vec![],
            node_name: "node1",
            node_labels: Labels::new(),
            fits: true,
        },
        Case {
            upstream: "missing labels",
            node_selector: foo_bar.clone(),
            terms: vec![],
            node_name: "node1",
            node_labels: Labels::new(),
            fits: false,
        },
        Case {
            upstream: "same labels",
            node_selector: foo_bar.clone(),
            terms: vec![],
            node_name: "node1",
            node_labels: foo_bar.clone(),
            fits: true,
        },
        Case {
            upstream: "node labels are superset",
            node_selector: foo_bar.clone(),
            terms: vec![],
            node_name: "node1",
            node_labels: labels(&[("foo", "bar"), ("baz", "blah")]),
            fits: true,
        },
        Case {
            upstream: "node labels are subset",
            node_selector: labels(&[("foo", "bar"), ("baz", "blah")]),
            terms: vec![],
            node_name: "node1",
            node_labels: foo_bar.clone(),
            fits: false,
        },
        case(
            "Pod with matchExpressions using In operator that matches the existing node",
            vec![vec![req("foo", In, &["bar", "value2"])]],
            foo_bar.clone(),
            true,
        ),
        case(
            "Pod with matchExpressions using Gt operator that matches the existing node",
            vec![vec![req("kernel-version", Gt, &["0204"])]],
            labels(&[("kernel-version", "0206")]),
            true,
        ),
        case(
            "Pod with matchExpressions using NotIn operator that matches the existing node",
            vec![vec![req("mem-type", NotIn, &["DDR", "DDR2"])]],
            labels(&[("mem-type", "DDR3")]),
            true,
        ),
        case(
            "Pod with matchExpressions using Exists operator that matches the existing node",
            vec![vec![req("GPU", Exists, &[])]],
            labels(&[("GPU", "NVIDIA-GRID-K1")]),
            true,
        ),
        case(
            "Pod with affinity that don't match node's labels won't schedule onto the node",
            vec![vec![req("foo", In, &["value1", "value2"])]],
            foo_bar.clone(),
            false,
        ),
        case(
            "Pod with empty MatchExpressions is not a valid value will match no objects and won't schedule onto the node",
            vec![vec![]],
            foo_bar.clone(),
            false,
        ),
        case(
            "Pod with multiple matchExpressions ANDed that doesn't match the existing node",
            vec![vec![
                req("GPU", Exists, &[]),
                req("GPU", NotIn, &["AMD", "INTER"]),
            ]],
            labels(&[("GPU", "AMD")]),
            false,
        ),
        case(
            "Pod with multiple NodeSelectorTerms ORed in affinity, matches the node's labels and will schedule onto the node",
            vec![
                vec![req("foo", In, &["bar", "value2"])],
                vec![req("diffkey", In, &["wrong", "value2"])],
            ],
            foo_bar.clone(),
            true,
        ),
        case(
            "Pod with an Affinity and a PodSpec.NodeSelector(the old thing that we are deprecating) both are satisfied, will schedule onto the node",
            vec![vec![req("foo", Exists, &[])]],
            foo_bar.clone(),
            true,
        ),
        case(
            "Pod with matchFields using In operator that matches the existing node",
            vec![vec![field(In, &["node1"])]],
            Labels::new(),
            true,
        ),
        Case {
            upstream: "Pod with matchFields using In operator that does not match the existing node",
            node_selector: Labels::new(),
            terms: vec![vec![field(In, &["node1"])]],
            node_name: "node2",
            node_labels: Labels::new(),
            fits: false,
        },
        case(
            "Pod with two terms: matchFields does not match, but matchExpressions matches",
            vec![vec![field(In, &["node2"])], vec![req("foo", In, &["bar"])]],
            foo_bar.clone(),
            true,
        ),
        case(
            "Pod with one term: matchFields does not match, but matchExpressions matches",
            vec![vec![field(In, &["node2"]), req("foo", In, &["bar"])]],
            foo_bar.clone(),
            false,
        ),
        case(
            "Pod with one term: both matchFields and matchExpressions match",
            vec![vec![field(In, &["node1"]), req("foo", In, &["bar"])]],
            foo_bar.clone(),
            true,
        ),
        case(
            "Pod with two terms: both matchFields and matchExpressions do not match",
            vec![
                vec![field(In, &["node2"])],
                vec![req("foo", In, &["not-match-to-bar"])],
            ],
            foo_bar.clone(),
            false,
        ),
    ];
    let mut failures = Vec::new();
    for c in cases {
        let mut pod = Pod::new("default", "p", Resources::pod(100, 1 << 20));
        pod.node_selector = c.node_selector;
        pod.affinity = NodeAffinity { terms: c.terms };
        let fits = check_constraints(&pod, Some(c.node_name), &c.node_labels, &[]).is_ok();
        if fits != c.fits {
            failures.push(format!("{}: want fits={}, got {fits}", c.upstream, c.fits));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn a_pod_pinned_to_a_node_by_name_never_fits_a_new_node() {
    // What the DaemonSet controller writes into each of its pods.
    let mut pod = Pod::new("kube-system", "svclb-traefik-x", Resources::pod(10, 1 << 20));
    pod.affinity = NodeAffinity {
        terms: vec![vec![field(SelectorOperator::In, &["node1"])]],
    };
    assert!(check_constraints(&pod, None, &Labels::new(), &[]).is_err());
}
