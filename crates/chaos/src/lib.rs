//! Chaos scenarios.
//!
//! - [`scenario`]: the YAML format (documented by `scenario.schema.json`
//!   beside this crate), parsed with errors that name the field.
//! - [`builtin`]: the six built-in scenarios.
//! - [`run`]: the coordinator running a scenario over the whole ecosystem
//!   in simulated time, and its deterministic report.
//! - [`live`]: the same in real time, against running services, through
//!   their HTTP hooks and the bus.
//! - [`service`]: the coordinator API that starts and follows live runs.
//! - [`timeline`]: one run's injections and detections, steps' triggers
//!   and the judging of expectations, shared by both coordinators.
//! - [`faults`]: what each fault means to the part it hits.
//! - [`report`]: the report as Markdown and as a self-contained HTML page.

pub mod builtin;
pub mod faults;
pub mod live;
pub mod report;
pub mod run;
pub mod scenario;
pub mod service;
pub mod timeline;

pub use run::{Report, run};
pub use scenario::{Invalid, Scenario};
