//! The simulator's tests in one binary: whole runs through the policy
//! engine (the NASA trace included) and trace reading under fuzzing.
#![allow(clippy::unwrap_used)]

mod simulate;
mod trace_fuzz;
