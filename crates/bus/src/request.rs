//! Request/reply on top of publish/subscribe, so it works on every transport.
//!
//! A request carries the requester's inbox topic and a correlation id; the
//! responder publishes a [`Reply`] to that inbox. Each [`crate::Bus`] has one
//! inbox, subscribed lazily on the first request, and a table of pending
//! correlation ids waiting for their reply.

use crate::{Bus, BusError, Message, Topic};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{OnceCell, oneshot};

/// A request with its return address.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Request<T> {
    /// The requester's inbox topic.
    pub reply_to: String,
    /// Matches the reply to this request.
    pub correlation: u64,
    /// The request itself.
    pub body: T,
}

/// A reply: the encoded response, or the responder's error text.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Reply {
    /// The request's correlation id.
    pub correlation: u64,
    /// The response in the binary codec, or an error message.
    pub result: Result<Vec<u8>, String>,
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Vec<u8>, String>>>>>;

/// Per-bus request state: the inbox and the replies being waited for.
pub(crate) struct Requester {
    inbox: String,
    next: AtomicU64,
    pending: Pending,
    started: OnceCell<()>,
}

impl Requester {
    pub(crate) fn new(instance: u64) -> Self {
        Requester {
            inbox: format!("_inbox.{instance:016x}"),
            next: AtomicU64::new(1),
            pending: Arc::new(Mutex::new(HashMap::new())),
            started: OnceCell::new(),
        }
    }
}

impl Bus {
    /// Sends a request and waits up to `timeout` for the typed response.
    pub async fn request<Req: Message, Resp: Message>(
        &self,
        topic: &Topic<Request<Req>>,
        key: Option<&str>,
        body: Req,
        timeout: Duration,
    ) -> Result<Resp, BusError> {
        let r = self.requester();
        r.started
            .get_or_try_init(|| async {
                let mut inbox = self.subscribe(&Topic::<Reply>::new(&r.inbox), None).await?;
                let pending = r.pending.clone();
                tokio::spawn(async move {
                    while let Some(d) = inbox.recv().await {
                        if let Some(tx) = pending.lock().remove(&d.msg.correlation) {
                            let _ = tx.send(d.msg.result);
                        }
                    }
                });
                Ok::<(), BusError>(())
            })
            .await?;
        let correlation = r.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        r.pending.lock().insert(correlation, tx);
        let req = Request {
            reply_to: r.inbox.clone(),
            correlation,
            body,
        };
        if let Err(e) = self.publish(topic, key, req).await {
            r.pending.lock().remove(&correlation);
            return Err(e);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Ok(bytes))) => Ok(tradestack_model::codec::decode(&bytes)?),
            Ok(Ok(Err(remote))) => Err(BusError::Remote(remote)),
            Ok(Err(_)) => Err(BusError::Closed),
            Err(_) => {
                r.pending.lock().remove(&correlation);
                Err(BusError::Timeout(topic.name().to_string()))
            }
        }
    }

    /// Answers requests on `topic` with `handler` until the bus closes.
    /// Responders sharing a `group` share the load.
    pub async fn serve<Req, Resp, F, Fut>(
        &self,
        topic: &Topic<Request<Req>>,
        group: Option<&str>,
        handler: F,
    ) -> Result<tokio::task::JoinHandle<()>, BusError>
    where
        Req: Message,
        Resp: Message,
        F: Fn(Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, String>> + Send,
    {
        let mut sub = self.subscribe(topic, group).await?;
        let bus = self.clone();
        Ok(tokio::spawn(async move {
            while let Some(d) = sub.recv().await {
                let Request {
                    reply_to,
                    correlation,
                    body,
                } = d.msg;
                let result = match handler(body).await {
                    Ok(resp) => {
                        tradestack_model::codec::encode_message(&resp).map_err(|e| e.to_string())
                    }
                    Err(e) => Err(e),
                };
                let reply = Reply {
                    correlation,
                    result,
                };
                if let Err(e) = bus
                    .publish(&Topic::<Reply>::new(&reply_to), None, reply)
                    .await
                {
                    tracing::warn!(error = %e, reply_to, "could not send reply");
                }
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tradestack_kernel::RealClock;

    #[tokio::test]
    async fn request_reply_and_remote_errors() {
        let bus = Bus::memory(Arc::new(RealClock), 1);
        let topic = Topic::<Request<u32>>::new("svc.double");
        bus.serve(&topic, None, |n: u32| async move {
            if n == 0 {
                Err("zero is not allowed".to_string())
            } else {
                Ok(u64::from(n) * 2)
            }
        })
        .await
        .unwrap();
        let got: u64 = bus
            .request(&topic, None, 21, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(got, 42);
        let err = bus
            .request::<u32, u64>(&topic, None, 0, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            matches!(err, BusError::Remote(ref m) if m == "zero is not allowed"),
            "{err}"
        );
        // Nobody serves this topic: the request times out.
        let lonely = Topic::<Request<u32>>::new("svc.nobody");
        let err = bus
            .request::<u32, u64>(&lonely, None, 1, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(err, BusError::Timeout(_)));
    }
}
