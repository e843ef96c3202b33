//! The resource types the server serves, and how their URLs look.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource {
    /// `""` for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
}

impl Resource {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `pods`, `leases.coordination.k8s.io`: how Status messages name the resource.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

const fn core(plural: &'static str, kind: &'static str, namespaced: bool) -> Resource {
    Resource {
        group: "",
        version: "v1",
        plural,
        kind,
        namespaced,
    }
}

const fn grouped(group: &'static str, plural: &'static str, kind: &'static str) -> Resource {
    Resource {
        group,
        version: "v1",
        plural,
        kind,
        namespaced: true,
    }
}

pub const NODES: Resource = core("nodes", "Node", false);
pub const PODS: Resource = core("pods", "Pod", true);
pub const SECRETS: Resource = core("secrets", "Secret", true);
pub const CONFIGMAPS: Resource = core("configmaps", "ConfigMap", true);
pub const EVENTS: Resource = grouped("events.k8s.io", "events", "Event");
pub const LEASES: Resource = grouped("coordination.k8s.io", "leases", "Lease");
pub const PDBS: Resource = grouped("policy", "poddisruptionbudgets", "PodDisruptionBudget");
pub const DAEMONSETS: Resource = grouped("apps", "daemonsets", "DaemonSet");
/// metrics-server's NodeMetrics: served apart from the stored resources
/// (see `node_metrics`), but audited and authorized like them.
pub const NODE_METRICS: Resource = Resource {
    group: "metrics.k8s.io",
    version: "v1beta1",
    plural: "nodes",
    kind: "NodeMetrics",
    namespaced: false,
};
/// TokenReview and SubjectAccessReview: answered, never stored (see
/// `review`), but authorized like any create.
pub const TOKEN_REVIEWS: Resource = Resource {
    group: "authentication.k8s.io",
    version: "v1",
    plural: "tokenreviews",
    kind: "TokenReview",
    namespaced: false,
};
pub const SUBJECT_ACCESS_REVIEWS: Resource = Resource {
    group: "authorization.k8s.io",
    version: "v1",
    plural: "subjectaccessreviews",
    kind: "SubjectAccessReview",
    namespaced: false,
};
pub const REPLICASETS: Resource = grouped("apps", "replicasets", "ReplicaSet");
pub const STATEFULSETS: Resource = grouped("apps", "statefulsets", "StatefulSet");
pub const PVCS: Resource = core("persistentvolumeclaims", "PersistentVolumeClaim", true);
pub const PVS: Resource = core("persistentvolumes", "PersistentVolume", false);

pub const ALL: [Resource; 12] = [
    NODES,
    PODS,
    SECRETS,
    CONFIGMAPS,
    EVENTS,
    LEASES,
    PDBS,
    DAEMONSETS,
    REPLICASETS,
    STATEFULSETS,
    PVCS,
    PVS,
];

pub fn by_kind(api_version: &str, kind: &str) -> Option<Resource> {
    ALL.into_iter()
        .find(|r| r.kind == kind && r.api_version() == api_version)
}

/// A parsed request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub resource: Resource,
    /// `""` for cluster-scoped resources and all-namespace lists.
    pub namespace: String,
    /// `""` for collections.
    pub name: String,
    pub subresource: Option<String>,
}

/// Map `/api/v1/...` or `/apis/GROUP/VERSION/...` to a target; `None` is a 404.
pub fn parse_path(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (*ns, rest),
        _ => ("", rest),
    };
    let (plural, name, subresource) = match rest {
        [plural] => (*plural, "", None),
        [plural, name] => (*plural, *name, None),
        [plural, name, sub] => (*plural, *name, Some(sub.to_string())),
        _ => return None,
    };
    let resource = ALL
        .into_iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)?;
    // A namespaced object needs its namespace; a cluster-scoped one has none.
    if (!name.is_empty() && resource.namespaced && namespace.is_empty())
        || (!resource.namespaced && !namespace.is_empty())
    {
        return None;
    }
    Some(Target {
        resource,
        namespace: namespace.to_string(),
        name: name.to_string(),
        subresource,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_targets() {
        let t = parse_path("/api/v1/namespaces/work/pods/db-0/eviction").expect("eviction path");
        assert_eq!(t.resource, PODS);
        assert_eq!((t.namespace.as_str(), t.name.as_str()), ("work", "db-0"));
        assert_eq!(t.subresource.as_deref(), Some("eviction"));
        let t = parse_path("/api/v1/pods").expect("all pods");
        assert_eq!((t.namespace.as_str(), t.name.as_str()), ("", ""));
        let t = parse_path("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/x").expect("lease");
        assert_eq!(t.resource, LEASES);
        assert!(parse_path("/api/v1/nodes/a").is_some());
        assert!(parse_path("/api/v1/namespaces/x/nodes/a").is_none());
        assert!(parse_path("/api/v1/pods/a").is_none());
        assert!(parse_path("/apis/metrics.k8s.io/v1beta1/nodes").is_none());
    }
}
