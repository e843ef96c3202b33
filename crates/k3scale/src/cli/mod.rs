//! The subcommands: each parses its flags and calls the library.

pub mod inspect;
pub mod once;
pub mod pool;
pub mod run;
pub mod simulate;
pub mod validate;
