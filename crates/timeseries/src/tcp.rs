//! Line protocol over TCP (QuestDB's and InfluxDB's port 9009 protocol).
//!
//! Complete lines are stored as they arrive, in batches of whatever one read
//! brought. On a bad line the lines before it are committed, the error is
//! logged, and the connection is closed, as QuestDB does: TCP has no way to
//! answer the client.

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tradestack_kernel::Clock;
use tradestack_lineproto::Precision;

use crate::metrics::IngestMetrics;
use crate::store::Store;

/// Longest line accepted; a client sending more without a newline is cut off.
const MAX_LINE: usize = 16 << 20;

/// Accepts connections until the listener fails.
pub async fn serve(
    listener: TcpListener,
    store: Store,
    clock: Arc<dyn Clock>,
    metrics: IngestMetrics,
) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let store = store.clone();
                let clock = clock.clone();
                let metrics = metrics.clone();
                tokio::spawn(async move {
                    metrics.tcp_connections.inc();
                    if let Err(e) = connection(stream, &store, &clock, &metrics).await {
                        tracing::warn!(%peer, error = %e, "line-protocol connection closed");
                    }
                    metrics.tcp_connections.dec();
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "line-protocol accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn connection(
    mut stream: TcpStream,
    store: &Store,
    clock: &Arc<dyn Clock>,
    metrics: &IngestMetrics,
) -> Result<(), String> {
    let _ = stream.set_nodelay(true);
    let mut buf = BytesMut::with_capacity(1 << 20);
    loop {
        if buf.capacity() - buf.len() < (1 << 16) {
            buf.reserve(1 << 20);
        }
        let n = stream.read_buf(&mut buf).await.map_err(|e| e.to_string())?;
        let eof = n == 0;
        let end = if eof {
            buf.len()
        } else {
            match memrchr_newline(&buf) {
                Some(i) => i + 1,
                None if buf.len() > MAX_LINE => {
                    return Err(format!("line longer than {MAX_LINE} bytes"));
                }
                None => continue,
            }
        };
        if end > 0 {
            let chunk = buf.split_to(end).freeze();
            let now = clock.now().0;
            let s = store.clone();
            let outcome = tokio::task::spawn_blocking(move || {
                s.write_lines(&chunk, Precision::Nanoseconds, now, true)
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
            metrics.record("tcp", &outcome);
            if let Some((line, message)) = outcome.errors.first() {
                return Err(format!(
                    "bad line {line} of the batch: {message}; {} lines before it were stored",
                    outcome.accepted
                ));
            }
        }
        if eof {
            return Ok(());
        }
    }
}

fn memrchr_newline(b: &[u8]) -> Option<usize> {
    b.iter().rposition(|&c| c == b'\n')
}
