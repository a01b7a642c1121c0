//! The market simulator in real time: the same agents as [`crate::sim`],
//! trading on the running exchange through its sequencer (every order is
//! journaled like a client's), woken by the wall clock, and steered at run
//! time through a [`SimControl`] (the scenario hooks: shocks, depegs,
//! volatility regimes, liquidity withdrawal).

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tradestack_exchange::{Command, ExchangeHandle};
use tradestack_kernel::{Clock, DetRng};
use tradestack_model::{Amount, Instrument, InstrumentId, Nanos, Price, UnixNanos};

use crate::reference::{Overlay, OverlayId, ReferenceError, ReferenceProcess};
use crate::sim::{Population, SimConfig, book_state};

/// What the running simulator looks like.
#[derive(Clone, Debug, Serialize)]
pub struct SimStatus {
    /// The reference process's time.
    pub now: UnixNanos,
    /// Reference prices now.
    pub prices: Vec<(InstrumentId, Price)>,
    /// Active overlays.
    pub overlays: Vec<(OverlayId, Overlay)>,
    /// Whether the market makers have pulled their quotes.
    pub liquidity_withdrawn: bool,
}

/// Why a control request failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The simulator is not running (disabled, or it stopped).
    #[error("the market simulator is not running")]
    NotRunning,
    /// The reference process refused the overlay.
    #[error(transparent)]
    Refused(#[from] ReferenceError),
}

enum Request {
    Add(Overlay, oneshot::Sender<Result<OverlayId, ReferenceError>>),
    Clear(Option<OverlayId>, oneshot::Sender<bool>),
    Liquidity(bool, oneshot::Sender<()>),
    Status(oneshot::Sender<SimStatus>),
}

/// A handle that steers the running simulator; cheap to clone.
#[derive(Clone, Debug)]
pub struct SimControl {
    tx: mpsc::Sender<Request>,
}

/// The simulator's end of a [`SimControl`].
pub struct SimRequests(mpsc::Receiver<Request>);

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Request::Add(..) => "Add",
            Request::Clear(..) => "Clear",
            Request::Liquidity(..) => "Liquidity",
            Request::Status(..) => "Status",
        })
    }
}

impl SimControl {
    /// A control handle and the receiving end to pass to [`run`].
    pub fn channel() -> (SimControl, SimRequests) {
        let (tx, rx) = mpsc::channel(64);
        (SimControl { tx }, SimRequests(rx))
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Request,
    ) -> Result<T, ControlError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| ControlError::NotRunning)?;
        rx.await.map_err(|_| ControlError::NotRunning)
    }

    /// Adds a reference-price overlay (shock, depeg, volatility regime).
    pub async fn add_overlay(&self, overlay: Overlay) -> Result<OverlayId, ControlError> {
        Ok(self.ask(|tx| Request::Add(overlay, tx)).await??)
    }

    /// Clears one overlay (`Some`) or all (`None`); false if the id was unknown.
    pub async fn clear_overlay(&self, id: Option<OverlayId>) -> Result<bool, ControlError> {
        self.ask(|tx| Request::Clear(id, tx)).await
    }

    /// Makes the market makers pull (`true`) or restore (`false`) their quotes.
    pub async fn withdraw_liquidity(&self, withdrawn: bool) -> Result<(), ControlError> {
        self.ask(|tx| Request::Liquidity(withdrawn, tx)).await
    }

    /// The simulator's state.
    pub async fn status(&self) -> Result<SimStatus, ControlError> {
        self.ask(Request::Status).await
    }
}

/// Most agent wake-ups handled per tick, so a long pause cannot stall the loop.
const MAX_WAKES_PER_TICK: usize = 2_000;

/// Runs the agents until the exchange stops, serving `requests` in between.
pub async fn run(
    handle: ExchangeHandle,
    config: SimConfig,
    clock: Arc<dyn Clock>,
    seed: u64,
    requests: SimRequests,
    bus: Option<tradestack_bus::Bus>,
) {
    let SimRequests(mut requests) = requests;
    let start = clock.now();
    let rng = DetRng::new(seed);
    let mut reference = match ReferenceProcess::new(&config.reference, start, &rng.fork(1)) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "market simulator not started");
            return;
        }
    };
    let Ok(instruments) = handle
        .read(|ex| ex.instruments().cloned().collect::<Vec<Instrument>>())
        .await
    else {
        return;
    };
    let mut population = match Population::new(&config, instruments.iter(), &reference, start, &rng)
    {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "market simulator not started");
            return;
        }
    };
    // Fund the agents that hold nothing yet: after a restart the journal
    // already has their balances.
    for cmd in population.funding_commands(instruments.iter()) {
        if let Command::Deposit { account, asset, .. } = &cmd {
            let (a, s) = (account.clone(), asset.clone());
            let held = handle.read(move |ex| ex.ledger().get(&a, &s).total()).await;
            if matches!(held, Ok(a) if a == Amount::ZERO) && handle.execute(cmd).await.is_err() {
                return;
            }
        }
    }
    tracing::info!(agents = config.agents.len(), "market simulator running");
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut withdrawn = false;
    let reference_topic =
        tradestack_bus::Topic::<crate::feed::ReferencePrices>::new(crate::feed::REFERENCE_TOPIC);
    let reference_out = bus
        .as_ref()
        .and_then(|b| b.publisher(&reference_topic).ok());
    let mut last_published = i64::MIN;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            r = requests.recv() => {
                let Some(r) = r else { continue };
                // Overlays act from their own start times: bring the process to now first.
                let now = clock.now();
                if now.0 > reference.now().0 {
                    reference.step(Nanos(now.0 - reference.now().0));
                }
                match r {
                    Request::Add(o, reply) => {
                        let r = reference.add_overlay(o);
                        if let Ok(id) = &r {
                            tracing::info!(overlay = id.0, "simulator overlay added");
                        }
                        let _ = reply.send(r);
                    }
                    Request::Clear(Some(id), reply) => {
                        let _ = reply.send(reference.clear_overlay(id));
                    }
                    Request::Clear(None, reply) => {
                        reference.clear_all_overlays();
                        let _ = reply.send(true);
                    }
                    Request::Liquidity(w, reply) => {
                        withdrawn = w;
                        population.withdraw_liquidity(w);
                        tracing::info!(withdrawn = w, "simulator liquidity");
                        let _ = reply.send(());
                    }
                    Request::Status(reply) => {
                        let _ = reply.send(SimStatus {
                            now: reference.now(),
                            prices: reference.prices(),
                            overlays: reference
                                .overlays()
                                .map(|(id, o)| (id, o.clone()))
                                .collect(),
                            liquidity_withdrawn: withdrawn,
                        });
                    }
                }
                continue;
            }
        }
        let now = clock.now();
        if now.0 > reference.now().0 {
            reference.step(Nanos(now.0 - reference.now().0));
        }
        // Strategies and the risk monitor mark to these.
        if let Some(p) = &reference_out
            && now.0 >= last_published.saturating_add(Nanos::SECOND.0)
        {
            last_published = now.0;
            let msg = crate::feed::ReferencePrices {
                ts: now,
                prices: reference.prices(),
            };
            if let Err(e) = p.publish(None, msg).await {
                tracing::debug!(error = %e, "reference prices not published");
            }
        }
        for _ in 0..MAX_WAKES_PER_TICK {
            let Some(i) = population.pop_due(now.0) else {
                break;
            };
            let (instrument, account, base) = population.subject(i);
            let Ok(state) = handle
                .read(move |ex| book_state(ex, &instrument, &account, &base))
                .await
            else {
                return;
            };
            let mut cmds = Vec::new();
            population.wake(i, now, &reference, &state, &mut cmds);
            for c in cmds {
                if handle.execute(c).await.is_err() {
                    return;
                }
            }
        }
    }
}
