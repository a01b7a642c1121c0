//! Chaos scenarios.
//!
//! - [`scenario`]: the YAML format (documented by `scenario.schema.json`
//!   beside this crate), parsed with errors that name the field.
//! - [`builtin`]: the six built-in scenarios.
//! - [`run`]: the coordinator running a scenario over the whole ecosystem
//!   in simulated time, and its deterministic report.
//! - [`report`]: the report as Markdown and as a self-contained HTML page.

pub mod builtin;
pub mod report;
pub mod run;
pub mod scenario;

pub use run::{Report, run};
pub use scenario::{Invalid, Scenario};
