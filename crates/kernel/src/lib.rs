//! tradestack kernel: the deterministic core that runs a set of [`Component`]s reproducibly
//! in simulated time ([`Simulation`]) and unchanged in real time ([`RealTimeDriver`]).
//!
//! # Determinism rules
//!
//! A simulation is a pure function of its seed and its inputs. To keep it that way:
//!
//! - **Time comes from the kernel.** Components read time only through
//!   [`Context::now`]; [`RealClock`] is the only code that reads the wall clock, and the
//!   simulator never uses it. Simulated time jumps from event to event without sleeping.
//! - **Randomness comes from the kernel.** Every random number is drawn from a [`DetRng`]
//!   derived from the run seed; each component gets its own forked stream
//!   ([`Context::rng`]). There is no unseeded source anywhere.
//! - **Order is total.** Events are ordered by `(time, sequence number)`; the sequence is
//!   assigned at scheduling time, so ties run first-in first-out. Broadcast events reach
//!   components in registration order.
//! - **Time never runs backwards.** Scheduling in the past clamps to now; [`SimClock`]
//!   refuses to move backwards.
//! - **Money is never `f64`.** [`DetRng::next_f64`] exists for sampling only.
//!
//! # Example
//!
//! ```
//! use tradestack_kernel::{Component, Context, EventLog, Nanos, Simulation, UnixNanos};
//!
//! /// Re-arms itself with a random delay until it has seen ten pings.
//! struct Pinger {
//!     seen: u32,
//! }
//!
//! impl Component<u32> for Pinger {
//!     fn on_start(&mut self, ctx: &mut Context<'_, u32>) {
//!         ctx.schedule_after(Nanos::SECOND, 0);
//!     }
//!
//!     fn on_event(&mut self, ping: &u32, ctx: &mut Context<'_, u32>) {
//!         self.seen += 1;
//!         if self.seen < 10 {
//!             let delay = Nanos(ctx.rng().gen_range(1i64..1_000_000_000));
//!             ctx.schedule_after(delay, ping + 1);
//!         }
//!     }
//! }
//!
//! let run = |seed| {
//!     let mut sim = Simulation::new(seed, UnixNanos::ZERO).with_event_log(EventLog::hash_only());
//!     let id = sim.add_component(Pinger { seen: 0 });
//!     sim.run_for(Nanos::HOUR).expect("events encode");
//!     assert_eq!(sim.component::<Pinger>(id).map(|p| p.seen), Some(10));
//!     assert_eq!(sim.now(), UnixNanos::ZERO + Nanos::HOUR);
//!     sim.log_hash()
//! };
//! assert_eq!(run(1), run(1));
//! assert_ne!(run(1), run(2));
//! ```
//!
//! The optional [`EventLog`] records every dispatched event as `(time, seq, target, bytes)`
//! and keeps a running SHA-256, so two runs can be compared with one hash.

pub mod clock;
mod engine;
pub mod error;
pub mod log;
mod queue;
pub mod realtime;
pub mod rng;
pub mod scheduler;

pub use clock::{Clock, RealClock, SimClock};
pub use error::KernelError;
pub use log::EventLog;
pub use realtime::{Injector, RealTimeDriver};
pub use rng::{DetRng, SampleRange};
pub use scheduler::{Component, ComponentId, Context, RunOutcome, Simulation, StopReason, TimerId};
pub use tradestack_model::{Nanos, UnixNanos};
