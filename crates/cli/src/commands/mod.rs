//! The subcommands.

pub mod status;
pub mod up;
