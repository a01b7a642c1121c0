//! Errors raised by the kernel.

use tradestack_model::{Nanos, UnixNanos};

/// Everything that can go wrong in the kernel; all variants are caller mistakes or encoding failures.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// A simulated clock was asked to move backwards.
    #[error("clock cannot move backwards: now {now}, requested {requested}")]
    ClockBackwards {
        /// Current clock reading.
        now: UnixNanos,
        /// The earlier time that was requested.
        requested: UnixNanos,
    },
    /// A duration that must not be negative was negative.
    #[error("duration must not be negative, got {0}")]
    NegativeDuration(Nanos),
    /// A periodic timer needs a strictly positive period, otherwise it would never let time advance.
    #[error("timer period must be positive, got {0}")]
    NonPositivePeriod(Nanos),
    /// An event could not be encoded for the event log.
    #[error("failed to encode event for the event log: {0}")]
    Encode(#[from] postcard::Error),
    /// The real-time driver an [`crate::Injector`] feeds has been dropped.
    #[error("the real-time driver has been dropped")]
    DriverGone,
}
