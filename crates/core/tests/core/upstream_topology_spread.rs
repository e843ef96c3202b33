//! Cases of kube-scheduler's PodTopologySpread filter (kubernetes/kubernetes
//! pkg/scheduler/framework/plugins/podtopologyspread/filtering_test.go,
//! `TestSingleConstraint` and `TestMultipleConstraints`), written again from
//! their inputs and expected answers against the planner's
//! `check_pod_predicates`. Each row names the upstream case it follows.
//! Upstream answers "Unschedulable" and "UnschedulableAndUnresolvable"
//! (a node without the topology key) are both "does not fit" here; the
//! second is checked to come out as the missing-label reason.
//!
//! Deliberate difference: upstream's "terminating Pods should be excluded"
//! is not ported. k3scale does not track deletion timestamps, so a pod
//! being deleted still counts: the planner stays on the cautious side.

use k3scale_core::model::{
    LabelSelector, Labels, NodeAffinity, NodeSelectorRequirement, SelectorOperator, Taint, TaintEffect,
    TopologySpread,
};
use k3scale_core::scheduling::{Target, Unfit, check_pod_predicates};
use k3scale_core::{Pod, Resources};
use std::sync::Arc;

fn labels(kv: &[(&str, &str)]) -> Labels {
    kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// `st.MakeLabelSelector().Exists(key)`.
fn exists(key: &str) -> Option<LabelSelector> {
    Some(LabelSelector {
        match_labels: Labels::new(),
        match_expressions: vec![NodeSelectorRequirement {
            key: key.into(),
            operator: SelectorOperator::Exists,
            values: vec![],
            field: false,
        }],
    })
}

/// A DoNotSchedule constraint with upstream's defaults (nodeAffinityPolicy
/// Honor, nodeTaintsPolicy Ignore).
fn spread(max_skew: u32, key: &str, selector: Option<LabelSelector>) -> TopologySpread {
    TopologySpread {
        max_skew,
        topology_key: key.into(),
        selector,
        namespace: "default".into(),
        min_domains: None,
        honor_node_affinity: true,
        honor_taints: false,
    }
}

fn pod(pod_labels: &[(&str, &str)], constraints: Vec<TopologySpread>) -> Pod {
    let mut p = Pod::new("default", "p", Resources::pod(10, 1 << 20));
    p.labels = labels(pod_labels);
    p.topology_spread = Arc::from(constraints);
    p
}

/// An existing pod: on `node`, in `namespace`, with labels.
fn existing(name: &str, node: &str, namespace: &str, pod_labels: &[(&str, &str)]) -> Pod {
    let mut p = Pod::new(namespace, name, Resources::pod(10, 1 << 20));
    p.labels = labels(pod_labels);
    p.node_name = Some(node.into());
    p
}

fn on(name: &str, node: &str, pod_labels: &[(&str, &str)]) -> Pod {
    existing(name, node, "default", pod_labels)
}

/// A node: name, labels, tainted with `node.kubernetes.io/unschedulable`.
struct N(&'static str, Vec<(&'static str, &'static str)>, bool);

fn zoned(name: &'static str, zone: &'static str) -> N {
    N(name, vec![("zone", zone), ("node", name)], false)
}

/// What each node answers: `Ok`, `Skew` (Unschedulable) or `Missing`
/// (UnschedulableAndUnresolvable: no such label).
#[derive(Debug, PartialEq, Clone, Copy)]
enum Want {
    Ok,
    Skew,
    Missing,
}
use Want::{Missing, Ok as Fits, Skew};

fn check(case: &str, incoming: &Pod, nodes: &[N], pods: &[Pod], want: &[Want]) {
    let node_labels: Vec<Labels> = nodes.iter().map(|n| labels(&n.1)).collect();
    let taint = [Taint {
        key: "node.kubernetes.io/unschedulable".into(),
        value: String::new(),
        effect: TaintEffect::NoSchedule,
    }];
    let targets: Vec<Target<'_>> = nodes
        .iter()
        .zip(&node_labels)
        .map(|(n, l)| Target {
            name: Some(n.0),
            labels: l,
            taints: if n.2 { &taint } else { &[] },
            free: Resources::new(10_000, 10 << 30, 110),
            extended: Default::default(),
            pods: pods
                .iter()
                .filter(|p| p.node_name.as_deref() == Some(n.0))
                .collect(),
        })
        .collect();
    for (i, (n, want)) in nodes.iter().zip(want).enumerate() {
        let got = match check_pod_predicates(incoming, i, &targets) {
            Ok(()) => Fits,
            Err(Unfit::SpreadKeyMissing { .. }) => Missing,
            Err(Unfit::TopologySpread { .. }) => Skew,
            Err(other) => panic!("{case}: {}: unexpected {other}", n.0),
        };
        assert_eq!(got, *want, "{case}: {}", n.0);
    }
}

fn four_nodes() -> Vec<N> {
    vec![
        zoned("node-a", "zone1"),
        zoned("node-b", "zone1"),
        zoned("node-x", "zone2"),
        zoned("node-y", "zone2"),
    ]
}

/// Pods spread 2/1/0/3 over node-a, node-b, node-x, node-y.
fn spread_2_1_0_3() -> Vec<Pod> {
    vec![
        on("p-a1", "node-a", &[("foo", "")]),
        on("p-a2", "node-a", &[("foo", "")]),
        on("p-b1", "node-b", &[("foo", "")]),
        on("p-y1", "node-y", &[("foo", "")]),
        on("p-y2", "node-y", &[("foo", "")]),
        on("p-y3", "node-y", &[("foo", "")]),
    ]
}

#[test]
fn single_constraint_basics() {
    let foo = || exists("foo");
    check(
        "no existing pods",
        &pod(&[("foo", "")], vec![spread(1, "zone", foo())]),
        &four_nodes(),
        &[],
        &[Fits, Fits, Fits, Fits],
    );
    check(
        "no existing pods, incoming pod doesn't match itself",
        &pod(&[("foo", "")], vec![spread(1, "zone", exists("bar"))]),
        &four_nodes(),
        &[],
        &[Fits, Fits, Fits, Fits],
    );
    check(
        "existing pods in a different namespace do not count",
        &pod(&[("foo", "")], vec![spread(1, "zone", foo())]),
        &four_nodes(),
        &[
            existing("p-a1", "node-a", "ns1", &[("foo", "")]),
            existing("p-b1", "node-a", "ns2", &[("foo", "")]),
            on("p-x1", "node-x", &[("foo", "")]),
            on("p-y1", "node-y", &[("foo", "")]),
        ],
        &[Fits, Fits, Skew, Skew],
    );
    check(
        "existing pods do not match null selector",
        &pod(&[("foo", "")], vec![spread(1, "zone", None)]),
        &four_nodes(),
        &[
            on("p-x1", "node-x", &[("foo", "")]),
            on("p-y1", "node-y", &[("foo", "")]),
        ],
        &[Fits, Fits, Fits, Fits],
    );
    check(
        "pods spread across zones as 3/3, all nodes fit",
        &pod(&[("foo", "")], vec![spread(1, "zone", foo())]),
        &four_nodes(),
        &spread_2_1_0_3(),
        &[Fits, Fits, Fits, Fits],
    );
    check(
        "pods spread across zones as 1/2 due to absence of label 'zone' on node-b",
        &pod(&[("foo", "")], vec![spread(1, "zone", foo())]),
        &[
            zoned("node-a", "zone1"),
            N("node-b", vec![("zon", "zone1"), ("node", "node-b")], false),
            zoned("node-x", "zone2"),
            zoned("node-y", "zone2"),
        ],
        &[
            on("p-a1", "node-a", &[("foo", "")]),
            on("p-b1", "node-b", &[("foo", "")]),
            on("p-x1", "node-x", &[("foo", "")]),
            on("p-y1", "node-y", &[("foo", "")]),
        ],
        &[Fits, Missing, Skew, Skew],
    );
    check(
        "pod cannot be scheduled as all nodes don't have label 'rack'",
        &pod(&[("foo", "")], vec![spread(1, "rack", foo())]),
        &[zoned("node-a", "zone1"), zoned("node-x", "zone2")],
        &[],
        &[Missing, Missing],
    );
}

#[test]
fn single_constraint_skew_on_nodes() {
    let foo = || exists("foo");
    check(
        "pods spread across nodes as 2/1/0/3, only node-x fits",
        &pod(&[("foo", "")], vec![spread(1, "node", foo())]),
        &four_nodes(),
        &spread_2_1_0_3(),
        &[Skew, Skew, Fits, Skew],
    );
    check(
        "pods spread across nodes as 2/1/0/3, maxSkew is 2, node-b and node-x fit",
        &pod(&[("foo", "")], vec![spread(2, "node", foo())]),
        &four_nodes(),
        &spread_2_1_0_3(),
        &[Skew, Fits, Fits, Skew],
    );
    check(
        "pods spread across nodes as 2/1/0/3, but pod doesn't match itself",
        &pod(&[("bar", "")], vec![spread(1, "node", foo())]),
        &four_nodes(),
        &spread_2_1_0_3(),
        &[Skew, Fits, Fits, Skew],
    );
    // Upstream runs the filter alone: node-b and node-x pass it although
    // node affinity would keep the pod off them.
    let mut pinned = pod(&[("foo", "")], vec![spread(1, "node", foo())]);
    pinned.affinity = NodeAffinity {
        terms: vec![vec![NodeSelectorRequirement {
            key: "node".into(),
            operator: SelectorOperator::In,
            values: vec!["node-a".into(), "node-y".into()],
            field: false,
        }]],
    };
    check(
        "incoming pod has nodeAffinity, pods spread as 2/~1~/~0~/3, hence node-a fits",
        &pinned,
        &four_nodes(),
        &spread_2_1_0_3(),
        &[Fits, Fits, Fits, Skew],
    );
    let mut not_b = pod(&[("foo", "")], vec![spread(1, "zone", foo())]);
    not_b.affinity = NodeAffinity {
        terms: vec![vec![NodeSelectorRequirement {
            key: "node".into(),
            operator: SelectorOperator::NotIn,
            values: vec!["node-b".into()],
            field: false,
        }]],
    };
    check(
        "incoming pod has nodeAffinity, pods spread as 0/~2~/0/1, hence node-a fits",
        &not_b,
        &four_nodes(),
        &[
            on("p-b1", "node-b", &[("foo", "")]),
            on("p-b2", "node-b", &[("foo", "")]),
            on("p-y1", "node-y", &[("foo", "")]),
        ],
        &[Fits, Fits, Skew, Skew],
    );
}

#[test]
fn single_constraint_min_domains() {
    let three = || {
        vec![
            N("node-a", vec![("node", "node-a")], false),
            N("node-b", vec![("node", "node-b")], false),
            N("node-c", vec![("node", "node-c")], false),
        ]
    };
    let pods_2_2_1 = || {
        vec![
            on("p-a1", "node-a", &[("foo", "")]),
            on("p-a2", "node-a", &[("foo", "")]),
            on("p-b1", "node-b", &[("foo", "")]),
            on("p-b2", "node-b", &[("foo", "")]),
            on("p-c1", "node-c", &[("foo", "")]),
        ]
    };
    let with_min = |skew, key, min| {
        let mut c = spread(skew, key, exists("foo"));
        c.min_domains = Some(min);
        pod(&[("foo", "")], vec![c])
    };
    check(
        "pods spread across nodes as 2/2/1, maxSkew is 2, and the number of domains < minDomains, then the third node fits",
        &with_min(2, "node", 4),
        &three(),
        &pods_2_2_1(),
        &[Skew, Skew, Fits],
    );
    check(
        "pods spread across nodes as 2/2/1, maxSkew is 2, and the number of domains > minDomains, then the all nodes fit",
        &with_min(2, "node", 2),
        &three(),
        &pods_2_2_1(),
        &[Fits, Fits, Fits],
    );
    let zone_pods = || {
        vec![
            on("p-b1", "node-a", &[("foo", "")]),
            on("p-b2", "node-b", &[("foo", "")]),
            on("p-y1", "node-y", &[("foo", "")]),
        ]
    };
    check(
        "pods spread across zone as 2/1, maxSkew is 2 and the number of domains < minDomains, then the third and fourth nodes fit",
        &with_min(2, "zone", 3),
        &four_nodes(),
        &zone_pods(),
        &[Skew, Skew, Fits, Fits],
    );
    check(
        "pods spread across zone as 2/1, maxSkew is 2 and the number of domains > minDomains, then the all nodes fit",
        &with_min(2, "zone", 1),
        &four_nodes(),
        &zone_pods(),
        &[Fits, Fits, Fits, Fits],
    );
}

#[test]
fn single_constraint_node_inclusion_policies() {
    let foo_nodes = || {
        vec![
            N("node-a", vec![("node", "node-a"), ("foo", "")], false),
            N("node-b", vec![("node", "node-b"), ("foo", "")], false),
            N("node-x", vec![("node", "node-x"), ("foo", "")], false),
            N("node-y", vec![("node", "node-y")], false),
        ]
    };
    let pods = || {
        vec![
            on("p-b1", "node-a", &[("foo", "")]),
            on("p-b2", "node-b", &[("foo", "")]),
            on("p-y1", "node-y", &[("foo", "")]),
        ]
    };
    let selecting = |honor: bool| {
        let mut c = spread(1, "node", exists("foo"));
        c.honor_node_affinity = honor;
        let mut p = pod(&[("foo", "")], vec![c]);
        p.node_selector = labels(&[("foo", "")]);
        p
    };
    check(
        "NodeAffinityPolicy honored with labelSelectors",
        &selecting(true),
        &foo_nodes(),
        &pods(),
        &[Skew, Skew, Fits, Fits],
    );
    check(
        "NodeAffinityPolicy ignored with labelSelectors",
        &selecting(false),
        &foo_nodes(),
        &pods(),
        &[Skew, Skew, Fits, Skew],
    );
    let with_affinity = |honor: bool| {
        let mut c = spread(1, "node", exists("foo"));
        c.honor_node_affinity = honor;
        let mut p = pod(&[("foo", "")], vec![c]);
        p.affinity = NodeAffinity {
            terms: vec![vec![NodeSelectorRequirement {
                key: "foo".into(),
                operator: SelectorOperator::In,
                values: vec![String::new()],
                field: false,
            }]],
        };
        p
    };
    check(
        "NodeAffinityPolicy honored with nodeAffinity",
        &with_affinity(true),
        &foo_nodes(),
        &pods(),
        &[Skew, Skew, Fits, Fits],
    );
    check(
        "NodeAffinityPolicy ignored with nodeAffinity",
        &with_affinity(false),
        &foo_nodes(),
        &pods(),
        &[Skew, Skew, Fits, Skew],
    );
    let tainted = || {
        vec![
            N("node-a", vec![("node", "node-a"), ("foo", "")], false),
            N("node-b", vec![("node", "node-b"), ("foo", "")], false),
            N("node-x", vec![("node", "node-x"), ("foo", "")], false),
            N("node-y", vec![("node", "node-y")], true),
        ]
    };
    let taints = |honor: bool| {
        let mut c = spread(1, "node", exists("foo"));
        c.honor_taints = honor;
        pod(&[("foo", "")], vec![c])
    };
    check(
        "NodeTaintsPolicy honored",
        &taints(true),
        &tainted(),
        &pods(),
        &[Skew, Skew, Fits, Fits],
    );
    check(
        "NodeTaintsPolicy ignored",
        &taints(false),
        &tainted(),
        &pods(),
        &[Skew, Skew, Fits, Skew],
    );
}

#[test]
fn multiple_constraints() {
    let foo = || exists("foo");
    let bar = || exists("bar");
    let both = || {
        pod(
            &[("foo", "")],
            vec![spread(1, "zone", foo()), spread(1, "node", foo())],
        )
    };
    check(
        "two Constraints on zone and node, spreads = [3/3, 2/1/0/3]",
        &both(),
        &four_nodes(),
        &spread_2_1_0_3(),
        &[Skew, Skew, Fits, Skew],
    );
    let mut four_on_y = spread_2_1_0_3();
    four_on_y.push(on("p-y4", "node-y", &[("foo", "")]));
    check(
        "two Constraints on zone and node, spreads = [3/4, 2/1/0/4]",
        &both(),
        &four_nodes(),
        &four_on_y,
        &[Skew, Skew, Skew, Skew],
    );
    let foo_bar = || {
        pod(
            &[("foo", ""), ("bar", "")],
            vec![spread(1, "zone", foo()), spread(1, "node", bar())],
        )
    };
    check(
        "Constraints hold different labelSelectors, spreads = [1/0, 1/0/0/1]",
        &foo_bar(),
        &four_nodes(),
        &[
            on("p-a1", "node-a", &[("foo", "")]),
            on("p-y1", "node-y", &[("bar", "")]),
        ],
        &[Skew, Skew, Fits, Skew],
    );
    check(
        "Constraints hold different labelSelectors, spreads = [1/0, 0/0/1/1]",
        &foo_bar(),
        &four_nodes(),
        &[
            on("p-a1", "node-a", &[("foo", "")]),
            on("p-x1", "node-x", &[("bar", "")]),
            on("p-y1", "node-y", &[("bar", "")]),
        ],
        &[Skew, Skew, Skew, Skew],
    );
    check(
        "Constraints hold different labelSelectors, spreads = [2/3, 1/0/0/1]",
        &foo_bar(),
        &four_nodes(),
        &[
            on("p-a1", "node-a", &[("foo", "")]),
            on("p-a2", "node-a", &[("foo", ""), ("bar", "")]),
            on("p-y1", "node-y", &[("foo", "")]),
            on("p-y2", "node-y", &[("foo", ""), ("bar", "")]),
            on("p-y3", "node-y", &[("foo", "")]),
        ],
        &[Skew, Fits, Skew, Skew],
    );
    check(
        "Constraints hold different labelSelectors but pod doesn't match itself on 'zone' constraint",
        &pod(
            &[("bar", "")],
            vec![spread(1, "zone", foo()), spread(1, "node", bar())],
        ),
        &four_nodes(),
        &[
            on("p-a1", "node-a", &[("foo", "")]),
            on("p-x1", "node-x", &[("bar", "")]),
            on("p-y1", "node-y", &[("bar", "")]),
        ],
        &[Fits, Fits, Skew, Skew],
    );
    check(
        "two Constraints on zone and node, absence of label 'node' on node-x, spreads = [1/1, 1/0/0/1]",
        &both(),
        &[
            zoned("node-a", "zone1"),
            zoned("node-b", "zone1"),
            N("node-x", vec![("zone", "zone2")], false),
            zoned("node-y", "zone2"),
        ],
        &[
            on("p-a1", "node-a", &[("foo", "")]),
            on("p-y3", "node-y", &[("foo", "")]),
        ],
        &[Skew, Fits, Missing, Skew],
    );
    let foo_nodes = || {
        vec![
            N(
                "node-a",
                vec![("zone", "zone1"), ("node", "node-a"), ("foo", "")],
                false,
            ),
            N(
                "node-b",
                vec![("zone", "zone1"), ("node", "node-b"), ("foo", "")],
                false,
            ),
            N(
                "node-x",
                vec![("zone", "zone2"), ("node", "node-x"), ("foo", "")],
                false,
            ),
        ]
    };
    let pods_a_b_y = || {
        vec![
            on("p-a1", "node-a", &[("foo", "")]),
            on("p-b1", "node-b", &[("foo", "")]),
            on("p-y1", "node-y", &[("foo", "")]),
        ]
    };
    let mut mixed = pod(
        &[("foo", "")],
        vec![spread(1, "zone", foo()), {
            let mut c = spread(1, "node", foo());
            c.honor_node_affinity = false;
            c
        }],
    );
    mixed.node_selector = labels(&[("foo", "")]);
    let mut nodes = foo_nodes();
    nodes.push(N("node-y", vec![("zone", "zone2"), ("node", "node-y")], false));
    check(
        "two node inclusion Constraints, zone: honor/ignore, node: ignore/ignore",
        &mixed,
        &nodes,
        &pods_a_b_y(),
        &[Skew, Skew, Fits, Skew],
    );
    let honoring = pod(
        &[("foo", "")],
        vec![
            {
                let mut c = spread(1, "zone", foo());
                c.honor_taints = true;
                c
            },
            spread(1, "node", foo()),
        ],
    );
    let mut nodes = foo_nodes();
    nodes.push(N("node-y", vec![("zone", "zone2"), ("node", "node-y")], true));
    check(
        "two node inclusion Constraints, zone: honor/honor, node: honor/ignore",
        &honoring,
        &nodes,
        &pods_a_b_y(),
        &[Skew, Skew, Fits, Skew],
    );
}
