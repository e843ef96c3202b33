//! k3scale's simulator and backtester: replay a workload through the real
//! policy (`k3scale_core::decide`) on a virtual clock, and compare it with a
//! peak-sized fixed cluster and plain 2-minute threshold rules.

pub mod chart;
pub mod clock;
pub mod compare;
pub mod engine;
pub mod report;
pub mod scenario;
pub mod trace;

pub use clock::VirtualClock;
pub use compare::{Candidate, Comparison, compare, compare_candidates, contenders};
pub use engine::{Contender, RunResult, ScaleEvent, SimOptions, WorkloadSpec, run};
pub use report::Summary;
pub use scenario::{DEFAULT_SCENARIO, SCENARIOS, Scenario};
pub use trace::{DemandUnit, Trace, TraceError};
