//! The websocket endpoint `/graphql/ws`: both protocols (`graphql-transport-ws` and the legacy
//! `graphql-ws` of subscriptions-transport-ws), served by async-graphql's driver behind our own
//! upgrade and connection supervisor.
//!
//! The supervisor sits between the socket and the driver and owns what the driver does not:
//! - small buffers (4 KiB read, unbuffered writes) so an idle socket costs a few KiB;
//! - authentication in `connection_init` (`authorization`, `Authorization` or `token`, with or
//!   without `Bearer `); a bad token closes with 4403;
//! - 4408 for clients that never send `connection_init` within the configured time;
//! - keep-alive pings from the server (`ping` on graphql-transport-ws, `ka` on the legacy protocol);
//! - access-token expiry: the socket closes with 4403 when the token it was opened with expires,
//!   unless the client sent a fresh token for the same user in a `ping` payload
//!   (`{"type":"ping","payload":{"authorization":"Bearer …"}}`) first;
//! - a cap on active subscriptions per connection ([`SubscriptionSlots`]);
//! - on shutdown, a clean close with 1012 (service restart: reconnect) instead of a cut.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_graphql::Data;
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::PollSender;

use super::RallySchema;
use crate::auth::{ClientAddr, Identity, TokenKeys, Viewer};
use crate::error::{Error, Result};
use crate::state::AppState;

/// Close code: the client never initialised the connection.
pub const CLOSE_INIT_TIMEOUT: u16 = 4408;
/// Close code: bad or expired credentials.
pub const CLOSE_FORBIDDEN: u16 = 4403;
/// Close code: the server is restarting; reconnect (RFC 6455 "Service Restart").
pub const CLOSE_RESTART: u16 = 1012;

/// Settings of the websocket endpoint.
#[derive(Clone, Copy, Debug)]
pub struct SocketSettings {
    /// How long a client may take to send `connection_init`.
    pub init_timeout: Duration,
    /// How often the server pings.
    pub keepalive: Duration,
    /// Most active subscriptions per connection.
    pub max_subscriptions: usize,
}

/// What every websocket shares: the schema, the state, the shutdown signal and the open count.
#[derive(Clone)]
pub struct Sockets {
    schema: RallySchema,
    app: AppState,
    settings: SocketSettings,
    shutdown: watch::Receiver<bool>,
    open: Arc<AtomicUsize>,
}

impl Sockets {
    /// The websocket side of the server.
    pub fn new(
        schema: RallySchema,
        app: AppState,
        settings: SocketSettings,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            schema,
            app,
            settings,
            shutdown,
            open: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// How many websockets are open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Upgrades the request and serves the socket.
    pub fn upgrade(
        &self,
        upgrade: WebSocketUpgrade,
        protocol: GraphQLProtocol,
        legacy: bool,
        peer: SocketAddr,
    ) -> axum::response::Response {
        let sockets = self.clone();
        upgrade
            .protocols(["graphql-transport-ws", "graphql-ws"])
            .read_buffer_size(4 * 1024)
            .write_buffer_size(0)
            .max_message_size(256 * 1024)
            .max_frame_size(256 * 1024)
            .on_upgrade(move |socket| async move {
                sockets.open.fetch_add(1, Ordering::Relaxed);
                metrics::gauge!("rally_websockets_open").increment(1.0);
                let code = supervise(socket, protocol, legacy, peer, &sockets).await;
                metrics::counter!("rally_websocket_closes_total", "code" => code.to_string())
                    .increment(1);
                metrics::gauge!("rally_websockets_open").decrement(1.0);
                sockets.open.fetch_sub(1, Ordering::Relaxed);
            })
    }
}

/// The frame fields the supervisor reads.
#[derive(Deserialize)]
struct Frame {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    payload: Option<serde_json::Value>,
}

/// The credentials in a `connection_init` or `ping` payload.
fn credentials(payload: Option<&serde_json::Value>) -> Option<&str> {
    let payload = payload?;
    ["authorization", "Authorization", "token"]
        .iter()
        .find_map(|key| payload.get(*key).and_then(|v| v.as_str()))
}

fn viewer_of(payload: Option<&serde_json::Value>, keys: &TokenKeys) -> Viewer {
    Viewer::from_credentials(credentials(payload), keys)
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

fn expiry(identity: &Identity) -> Instant {
    let left = identity.expires_at - chrono::Utc::now().timestamp();
    Instant::now() + Duration::from_secs(u64::try_from(left.max(0)).unwrap_or(0))
}

/// Runs one connection to its end; returns the close code it ended with (1000 when the client left).
async fn supervise(
    socket: WebSocket,
    protocol: GraphQLProtocol,
    legacy: bool,
    peer: SocketAddr,
    sockets: &Sockets,
) -> u16 {
    let settings = sockets.settings;
    let keys = sockets.app.tokens.clone();
    let (mut to_socket, mut from_socket) = socket.split();
    let (engine_out, mut engine_rx) = mpsc::channel::<Message>(16);
    let (engine_in, engine_input) = mpsc::channel::<std::result::Result<Message, axum::Error>>(16);

    let slots = Arc::new(SubscriptionSlots::new(settings.max_subscriptions));
    // The supervisor checks the token of `connection_init` before forwarding it; the driver's init
    // callback takes that verdict instead of verifying the token a second time.
    let verdict = Arc::new(std::sync::Mutex::new(Viewer::Anonymous));
    let init_verdict = verdict.clone();
    let engine = GraphQLWebSocket::new_with_pair(
        PollSender::new(engine_out),
        ReceiverStream::new(engine_input),
        sockets.schema.clone(),
        protocol,
    )
    .on_connection_init(move |_payload| async move {
        let viewer = std::mem::take(&mut *init_verdict.lock().unwrap_or_else(|p| p.into_inner()));
        if matches!(viewer, Viewer::Invalid) {
            return Err(async_graphql::Error::new("Forbidden"));
        }
        let mut data = Data::default();
        data.insert(viewer);
        data.insert(ClientAddr(peer.ip()));
        data.insert(slots);
        Ok(data)
    });
    let engine = tokio::spawn(engine.serve());

    let far = Instant::now() + Duration::from_secs(10 * 365 * 24 * 3600);
    let init_deadline = Instant::now() + settings.init_timeout;
    let mut initialised = false;
    let mut token_expiry = far;
    let mut identity: Option<Identity> = None;
    let mut keepalive = tokio::time::interval(settings.keepalive);
    keepalive.tick().await;
    let mut shutdown = sockets.shutdown.clone();
    let ping = if legacy {
        r#"{"type":"ka"}"#
    } else {
        r#"{"type":"ping"}"#
    };

    let code = loop {
        tokio::select! {
            incoming = from_socket.next() => {
                let message = match incoming {
                    Some(Ok(message)) => message,
                    Some(Err(_)) | None => break 1006,
                };
                match &message {
                    Message::Text(text) => {
                        if let Ok(frame) = serde_json::from_str::<Frame>(text.as_str()) {
                            match frame.kind.as_str() {
                                "connection_init" if !initialised => {
                                    initialised = true;
                                    let viewer = viewer_of(frame.payload.as_ref(), &keys);
                                    *verdict.lock().unwrap_or_else(|p| p.into_inner()) = viewer.clone();
                                    match viewer {
                                        Viewer::Invalid => {
                                            let _ = to_socket.send(close(CLOSE_FORBIDDEN, "Forbidden: invalid access token")).await;
                                            break CLOSE_FORBIDDEN;
                                        }
                                        Viewer::User(user) => {
                                            token_expiry = expiry(&user);
                                            identity = Some(user);
                                        }
                                        Viewer::Anonymous => {}
                                    }
                                }
                                "ping" => {
                                    // A fresh token for the same user extends the connection.
                                    if let (Some(current), Viewer::User(fresh)) = (identity, viewer_of(frame.payload.as_ref(), &keys))
                                        && fresh.user_id == current.user_id
                                    {
                                        token_expiry = expiry(&fresh);
                                        identity = Some(fresh);
                                    }
                                }
                                _ => {}
                            }
                        }
                    }
                    Message::Close(_) => break 1000,
                    Message::Ping(_) | Message::Pong(_) => continue,
                    Message::Binary(_) => {}
                }
                if engine_in.send(Ok(message)).await.is_err() {
                    break 1000;
                }
            }
            outgoing = engine_rx.recv() => {
                let Some(message) = outgoing else { break 1000 };
                let closing = matches!(message, Message::Close(_));
                if to_socket.send(message).await.is_err() || closing {
                    break 1000;
                }
            }
            () = sleep_until(init_deadline), if !initialised => {
                let _ = to_socket.send(close(CLOSE_INIT_TIMEOUT, "Connection initialisation timeout")).await;
                break CLOSE_INIT_TIMEOUT;
            }
            () = sleep_until(token_expiry), if identity.is_some() => {
                let _ = to_socket.send(close(CLOSE_FORBIDDEN, "Forbidden: access token expired")).await;
                break CLOSE_FORBIDDEN;
            }
            _ = keepalive.tick(), if initialised => {
                if to_socket.send(Message::Text(ping.into())).await.is_err() {
                    break 1006;
                }
            }
            () = async { let _ = shutdown.wait_for(|stopping| *stopping).await; } => {
                let _ = to_socket.send(close(CLOSE_RESTART, "server restarting; reconnect")).await;
                break CLOSE_RESTART;
            }
        }
    };
    engine.abort();
    let _ = to_socket.close().await;
    code
}

/// The active subscriptions of one connection, capped.
pub struct SubscriptionSlots {
    active: AtomicUsize,
    cap: usize,
}

impl SubscriptionSlots {
    /// Room for `cap` subscriptions.
    pub fn new(cap: usize) -> Self {
        Self {
            active: AtomicUsize::new(0),
            cap,
        }
    }

    /// Takes a slot for a subscription to `field`, or RATE_LIMITED when the connection is full.
    pub fn take(self: &Arc<Self>, field: &'static str) -> Result<SlotGuard> {
        let taken = self
            .active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |active| {
                (active < self.cap).then_some(active + 1)
            });
        if taken.is_err() {
            return Err(Error::RateLimited {
                what: "too many subscriptions on this connection",
                retry_after_seconds: 1,
            });
        }
        Ok(SlotGuard::new(Some(self.clone()), field))
    }
}

/// Held by a running subscription; frees its slot (and counts it out of the metrics) when dropped.
pub struct SlotGuard {
    slots: Option<Arc<SubscriptionSlots>>,
    field: &'static str,
}

impl SlotGuard {
    /// A guard for `field` (without slots: not capped, e.g. a stream not served over a websocket).
    pub fn new(slots: Option<Arc<SubscriptionSlots>>, field: &'static str) -> Self {
        metrics::gauge!("rally_subscriptions_active", "field" => field).increment(1.0);
        Self { slots, field }
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        if let Some(slots) = &self.slots {
            slots.active.fetch_sub(1, Ordering::AcqRel);
        }
        metrics::gauge!("rally_subscriptions_active", "field" => self.field).decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_and_freed() {
        let slots = Arc::new(SubscriptionSlots::new(2));
        let a = slots.take("x").unwrap();
        let _b = slots.take("x").unwrap();
        assert!(matches!(slots.take("x"), Err(Error::RateLimited { .. })));
        drop(a);
        assert!(slots.take("x").is_ok());
    }

    #[test]
    fn credentials_come_from_any_of_three_keys() {
        for key in ["authorization", "Authorization", "token"] {
            let payload = serde_json::json!({ key: "Bearer x" });
            assert_eq!(credentials(Some(&payload)), Some("Bearer x"));
        }
        assert_eq!(credentials(Some(&serde_json::json!({}))), None);
    }
}
