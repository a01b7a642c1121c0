//! The venue port of the live driver: where strategy actions go, and where
//! the updates and fills of their orders come from.
//!
//! Two adapters sit side by side: [`LocalVenue`] talks to the exchange's
//! sequencer in this process, and [`remote::RemoteVenue`] to a running
//! exchange over its native HTTP API and WebSocket streams. The driver
//! ([`crate::live`]) is the same for both.

pub mod remote;

use std::collections::BTreeSet;

use async_trait::async_trait;
use tokio::sync::{broadcast, mpsc};
use tradestack_exchange::{Command, ExchangeError, ExchangeEvent, ExchangeHandle};
use tradestack_model::{AccountId, Amount, AssetCode, Fill, Instrument, Order};

use crate::engine::Outgoing;
use crate::session::to_command;

/// Why the venue did not take an action.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VenueError {
    /// The venue answered and refused it; nothing changed there.
    #[error("refused ({code}): {message}")]
    Refused {
        /// The venue's error code, e.g. `insufficient_funds`.
        code: String,
        /// Its message.
        message: String,
    },
    /// The venue could not be reached or did not answer in time.
    #[error("venue unavailable: {0}")]
    Unavailable(String),
}

/// An update about one of the driver's orders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VenueEvent {
    /// An order was accepted or changed state.
    Order(Order),
    /// An order filled (partly).
    Fill(Fill),
    /// The stream lost updates (a reconnect, or it fell behind): orders
    /// and fills in between may be missing.
    Gap(String),
}

/// A trading venue as the live driver sees it.
#[async_trait]
pub trait Venue: Send + Sync + 'static {
    /// `local` or `remote`, for logs and metrics.
    fn kind(&self) -> &'static str;

    /// The instruments it lists.
    async fn instruments(&self) -> Result<Vec<Instrument>, VenueError>;

    /// Starts the stream of order updates and fills of `accounts`. Call it
    /// before sending anything, so no update is missed.
    async fn events(
        &self,
        accounts: BTreeSet<AccountId>,
    ) -> Result<mpsc::Receiver<VenueEvent>, VenueError>;

    /// Sends one action. `Ok` once the venue took it; what it did arrives on
    /// the event stream.
    async fn send(&self, action: &Outgoing) -> Result<(), VenueError>;

    /// What `account` holds of `asset` (free plus locked).
    async fn balance(&self, account: &AccountId, asset: &AssetCode) -> Result<Amount, VenueError>;

    /// Credits `amount` of `asset` to `account` (start-up funding).
    async fn deposit(
        &self,
        account: &AccountId,
        asset: &AssetCode,
        amount: Amount,
    ) -> Result<(), VenueError>;
}

/// How many updates may wait between the venue and the driver.
pub const EVENT_QUEUE: usize = 65_536;

/// The exchange in this process, through its sequencer.
#[derive(Clone)]
pub struct LocalVenue {
    handle: ExchangeHandle,
}

impl LocalVenue {
    /// A venue on the sequencer behind `handle`.
    pub fn new(handle: ExchangeHandle) -> Self {
        LocalVenue { handle }
    }
}

fn gone() -> VenueError {
    VenueError::Unavailable("the exchange is not taking commands".into())
}

fn refused(e: &ExchangeError) -> VenueError {
    VenueError::Refused {
        code: e.code().to_string(),
        message: e.to_string(),
    }
}

#[async_trait]
impl Venue for LocalVenue {
    fn kind(&self) -> &'static str {
        "local"
    }

    async fn instruments(&self) -> Result<Vec<Instrument>, VenueError> {
        self.handle
            .read(|ex| ex.instruments().cloned().collect())
            .await
            .map_err(|_| gone())
    }

    async fn events(
        &self,
        accounts: BTreeSet<AccountId>,
    ) -> Result<mpsc::Receiver<VenueEvent>, VenueError> {
        let mut rx = self.handle.subscribe();
        let (tx, out) = mpsc::channel(EVENT_QUEUE);
        tokio::spawn(async move {
            loop {
                let applied = match rx.recv().await {
                    Ok(a) => a,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        let gap = VenueEvent::Gap(format!("{n} exchange batches missed"));
                        if tx.send(gap).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                // Replayed journal entries happened before this driver started.
                if applied.replayed {
                    continue;
                }
                for e in &applied.events {
                    let event = match e {
                        ExchangeEvent::Order(o) if accounts.contains(&o.account) => {
                            VenueEvent::Order(o.clone())
                        }
                        ExchangeEvent::Fill(f) if accounts.contains(&f.account) => {
                            VenueEvent::Fill(f.clone())
                        }
                        _ => continue,
                    };
                    if tx.send(event).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(out)
    }

    async fn send(&self, action: &Outgoing) -> Result<(), VenueError> {
        let done = self
            .handle
            .execute(to_command(action))
            .await
            .map_err(|_| gone())?;
        done.result.map(|_| ()).map_err(|e| refused(&e))
    }

    async fn balance(&self, account: &AccountId, asset: &AssetCode) -> Result<Amount, VenueError> {
        let (a, s) = (account.clone(), asset.clone());
        self.handle
            .read(move |ex| ex.ledger().get(&a, &s).total())
            .await
            .map_err(|_| gone())
    }

    async fn deposit(
        &self,
        account: &AccountId,
        asset: &AssetCode,
        amount: Amount,
    ) -> Result<(), VenueError> {
        let cmd = Command::Deposit {
            account: account.clone(),
            asset: asset.clone(),
            amount,
        };
        let done = self.handle.execute(cmd).await.map_err(|_| gone())?;
        done.result.map(|_| ()).map_err(|e| refused(&e))
    }
}
