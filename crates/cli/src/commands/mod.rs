//! The subcommands.

pub mod bench;
pub mod status;
pub mod up;
