//! k3scale core: domain types, the policy engine and the scheduling
//! simulation. Pure and synchronous: no I/O, no clock reads, no kube/tokio.

pub mod config;
mod decide;
pub mod decision;
pub mod disruption;
pub mod drain;
pub mod forecast;
pub mod lease;
pub mod lifecycle;
pub mod model;
pub mod policy;
pub mod quantity;
pub mod scheduling;
pub mod snapshot;
pub mod testkit;
pub mod time;
pub mod window;

pub use decide::{decide, unschedulable_pods};
pub use decide::{pod_blocker, replacement_due};
pub use decision::{Blocker, Decision, Reason, ScaleDown, ScaleUp};
pub use model::{Node, NodeTemplate, OwnerKind, Pod, PodPhase, Pool};
pub use policy::{Expander, PendingPods, Policy};
pub use quantity::Resources;
pub use snapshot::{InFlight, Reading, Series, Snapshot};
pub use time::{Clock, Time};
