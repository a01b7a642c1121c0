//! The pre-trade gate: every order a strategy sends passes it before the venue.
//!
//! The engine and its drivers know nothing of risk rules; a risk monitor
//! implements [`OrderGate`] and a driver puts it in the order path.

use tradestack_model::UnixNanos;

use crate::engine::{Outgoing, StrategyEngine};

/// Why an order was refused before it reached the venue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The rule that refused it, e.g. `max_order_qty`.
    pub rule: String,
    /// What was wrong, for people.
    pub message: String,
}

/// Checks each action on its way to the venue.
pub trait OrderGate {
    /// `Ok` lets the action through. Cancels should always pass.
    fn check(
        &mut self,
        action: &Outgoing,
        now: UnixNanos,
        engine: &StrategyEngine,
    ) -> Result<(), Refusal>;
}

/// The gate that lets everything through.
#[derive(Clone, Copy, Debug, Default)]
pub struct Open;

impl OrderGate for Open {
    fn check(&mut self, _: &Outgoing, _: UnixNanos, _: &StrategyEngine) -> Result<(), Refusal> {
        Ok(())
    }
}
