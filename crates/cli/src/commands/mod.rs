//! The subcommands.

pub mod backtest;
pub mod backup;
pub mod bench;
pub mod bench_ingest;
pub mod data;
pub mod infra;
pub mod risk;
pub mod scenario;
pub mod status;
pub mod up;
