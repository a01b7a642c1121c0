//! The subcommands.

pub mod bench;
pub mod data;
pub mod status;
pub mod up;
