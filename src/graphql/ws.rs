//! The websocket endpoint `/graphql/ws`: both protocols (`graphql-transport-ws` and the legacy
//! `graphql-ws` of subscriptions-transport-ws), spoken by Rally itself behind its own upgrade.
//!
//! One task per connection reads frames, writes frames and owns:
//! - small buffers (4 KiB read, unbuffered writes) so an idle socket costs a few KiB;
//! - authentication in `connection_init` (`authorization`, `Authorization` or `token`, with or
//!   without `Bearer `); a bad token closes with 4403 (on the legacy protocol after a
//!   `connection_error` that says why, which is how its clients learn it);
//! - 4408 for clients that never send `connection_init` within the configured time;
//! - the protocol's own closes: 4400 for a frame it cannot read, 4401 for `subscribe` before the
//!   acknowledgement, 4409 for an id already running (the legacy protocol instead restarts the
//!   operation under that id, as its own server does), 4429 for a second `connection_init`;
//! - keep-alive pings from the server (`ping` on graphql-transport-ws, `ka` on the legacy protocol,
//!   and a websocket ping on both): a client from which nothing arrives for
//!   `RALLY_WS_SILENT_PERIODS` keep-alive periods is gone and is closed with 1001;
//! - access-token expiry: the socket closes with 4403 when the token it was opened with expires,
//!   unless the client sent a fresh token for the same user in a `ping` payload
//!   (`{"type":"ping","payload":{"authorization":"Bearer …"}}`) first;
//! - an ended session (logout, a replayed refresh token, on any instance): the socket closes with
//!   4403 within moments;
//! - a cap on running operations per connection (RATE_LIMITED on the extra one);
//! - on shutdown, a clean close with 1012 (service restart: reconnect) instead of a cut.
//!
//! Subscriptions run in shared executions ([`Fanout`]): the connection only wraps each shared
//! payload in its own frame. Every error carries a contract code, as over HTTP; a document that
//! does not parse or validate gets the protocol's `error` message instead of `next`/`data` (an
//! array of GraphQL errors, as the graphql-ws spec says; the legacy protocol's `error` carries the
//! same array, which its clients read as the list of errors), and nothing follows it.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use async_graphql_axum::GraphQLProtocol;
use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use axum::routing::get;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, sleep_until};
use tokio_stream::StreamMap;

use super::fanout::{Fanout, Payload, Payloads, Permit, Subscribe};
use super::schema::{EVENT_SUBSCRIPTIONS, STATE_SUBSCRIPTIONS};
use crate::auth::{ClientAddr, Identity, TokenKeys, Viewer};
use crate::error::Error;
use crate::state::AppState;

/// Close code: the client never initialised the connection.
pub const CLOSE_INIT_TIMEOUT: u16 = 4408;
/// Close code: bad or expired credentials.
pub const CLOSE_FORBIDDEN: u16 = 4403;
/// Close code: the server is restarting; reconnect (RFC 6455 "Service Restart").
pub const CLOSE_RESTART: u16 = 1012;
/// Close code: a frame the protocol does not know.
pub const CLOSE_INVALID: u16 = 4400;
/// Close code: `subscribe` before `connection_ack`.
pub const CLOSE_UNAUTHORIZED: u16 = 4401;
/// Close code: a second operation with an id that is running.
pub const CLOSE_DUPLICATE_ID: u16 = 4409;
/// Close code: a frame over the size limit (RFC 6455 "Message Too Big").
pub const CLOSE_TOO_BIG: u16 = 1009;
/// Largest frame a client may send.
const MAX_FRAME: usize = 256 * 1024;
/// Longest operation id (clients use counters or UUIDs): each running operation keeps its id in
/// the frames it sends, so a long one would multiply a socket's memory.
const MAX_ID_BYTES: usize = 128;
/// Operations a connection may start at once: an app subscribes to a few dozen as it connects.
const STARTS_BURST: NonZeroU32 = NonZeroU32::new(100).unwrap();
/// Operations a connection may start per second after its burst: each start parses and plans a
/// document and may load a snapshot, which starting and completing in a loop would repeat
/// without end however few run at once.
const STARTS_PER_SECOND: NonZeroU32 = NonZeroU32::new(20).unwrap();
/// Close code: a second `connection_init`.
pub const CLOSE_TOO_MANY_INITS: u16 = 4429;
/// Close code: the client answered no ping for `RALLY_WS_SILENT_PERIODS` keep-alive periods (RFC
/// 6455 "Going Away").
pub const CLOSE_GOING_AWAY: u16 = 1001;

/// Settings of the websocket endpoint.
#[derive(Clone, Copy, Debug)]
pub struct SocketSettings {
    /// How long a client may take to send `connection_init`.
    pub init_timeout: Duration,
    /// How often the server pings.
    pub keepalive: Duration,
    /// Keep-alive periods a client may stay silent before it is closed (0: never).
    pub silent_periods: u32,
    /// Most running operations per connection (subscriptions, and queries or mutations until they
    /// finish, even once the client completed them).
    pub max_subscriptions: usize,
}

/// What every websocket shares: the shared executions, the state, the shutdown signal and the open
/// count.
#[derive(Clone)]
pub struct Sockets {
    fanout: Fanout,
    app: AppState,
    settings: SocketSettings,
    shutdown: watch::Receiver<bool>,
    open: Arc<AtomicUsize>,
}

impl Sockets {
    /// The websocket side of the server.
    pub fn new(
        fanout: Fanout,
        app: AppState,
        settings: SocketSettings,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            fanout,
            app,
            settings,
            shutdown,
            open: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The shared subscription executions.
    pub fn fanout(&self) -> Fanout {
        self.fanout.clone()
    }

    /// How many websockets are open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Upgrades the request and serves the socket (`legacy`: the subscriptions-transport-ws
    /// protocol; `client`: the caller's address, as the HTTP side determines it behind proxies).
    fn upgrade(&self, upgrade: WebSocketUpgrade, legacy: bool, client: ClientAddr) -> Response {
        let sockets = self.clone();
        // The one protocol this connection speaks, announced as such (axum would pick the first
        // of its own list the client offered, which need not be the one chosen here).
        let protocol = if legacy {
            "graphql-ws"
        } else {
            "graphql-transport-ws"
        };
        upgrade
            .protocols([protocol])
            .read_buffer_size(4 * 1024)
            .write_buffer_size(0)
            .max_message_size(MAX_FRAME)
            .max_frame_size(MAX_FRAME)
            .on_upgrade(move |socket| async move {
                sockets.open.fetch_add(1, Ordering::Relaxed);
                metrics::gauge!("rally_websockets_open").increment(1.0);
                let connection = Connection {
                    sockets: &sockets,
                    legacy,
                    addr: client,
                    viewer: None,
                    identity: None,
                    running: StreamMap::new(),
                    permits: Arc::new(Semaphore::new(sockets.settings.max_subscriptions)),
                    starts: RateLimiter::direct(
                        Quota::per_second(STARTS_PER_SECOND).allow_burst(STARTS_BURST),
                    ),
                };
                let code = connection.serve(socket).await;
                metrics::counter!("rally_websocket_closes_total", "code" => code.to_string())
                    .increment(1);
                metrics::gauge!("rally_websockets_open").decrement(1.0);
                sockets.open.fetch_sub(1, Ordering::Relaxed);
            })
    }
}

/// The `/graphql/ws` route.
pub fn routes(sockets: Sockets) -> Router {
    Router::new()
        .route("/graphql/ws", get(graphql_ws))
        .with_state(sockets)
}

async fn graphql_ws(
    State(sockets): State<Sockets>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    _protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    // The first protocol of the client's list that we speak (`GraphQLProtocol` refuses the upgrade
    // when there is none).
    let legacy = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .map(str::trim)
                .find(|p| *p == "graphql-transport-ws" || *p == "graphql-ws")
        })
        == Some("graphql-ws");
    let trust_proxy = sockets.app.config.trust_proxy_headers;
    let client = ClientAddr::from_request(&headers, peer, trust_proxy);
    sockets.upgrade(upgrade, legacy, client)
}

/// A frame from the client, in either protocol.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientFrame {
    ConnectionInit {
        #[serde(default)]
        payload: Option<serde_json::Value>,
    },
    #[serde(alias = "start")]
    Subscribe {
        id: String,
        payload: Subscribe,
    },
    #[serde(alias = "stop")]
    Complete {
        id: String,
    },
    Ping {
        #[serde(default)]
        payload: Option<serde_json::Value>,
    },
    Pong {},
    ConnectionTerminate,
}

/// What a `connection_init` or `ping` payload says about credentials.
#[derive(Debug, PartialEq, Eq)]
enum Credentials<'a> {
    /// No payload, or one without any of the three keys.
    None,
    /// The value of the first key present, as a string.
    Given(&'a str),
    /// A key is present but not a string (a number, an object): a bad token, not anonymous.
    Malformed,
    /// The payload is not an object.
    Unreadable,
}

/// The credentials in a payload: `authorization`, `Authorization` or `token`.
fn credentials(payload: Option<&serde_json::Value>) -> Credentials<'_> {
    let payload = match payload {
        None | Some(serde_json::Value::Null) => return Credentials::None,
        Some(serde_json::Value::Object(payload)) => payload,
        Some(_) => return Credentials::Unreadable,
    };
    match ["authorization", "Authorization", "token"]
        .iter()
        .find_map(|key| payload.get(*key))
    {
        None => Credentials::None,
        Some(serde_json::Value::String(value)) => Credentials::Given(value),
        Some(_) => Credentials::Malformed,
    }
}

/// The caller a payload names: anonymous without credentials, invalid for malformed ones.
fn viewer_of(payload: Option<&serde_json::Value>, keys: &TokenKeys) -> Viewer {
    match credentials(payload) {
        Credentials::None => Viewer::Anonymous,
        Credentials::Given(value) => Viewer::from_credentials(Some(value), keys),
        Credentials::Malformed | Credentials::Unreadable => Viewer::Invalid,
    }
}

/// Whether a read failed because the client's frame passed the size limit.
fn too_big(err: &axum::Error) -> bool {
    std::error::Error::source(err)
        .and_then(|source| source.downcast_ref::<tungstenite::Error>())
        .is_some_and(|err| matches!(err, tungstenite::Error::Capacity(_)))
}

fn close(code: u16, reason: impl Into<String>) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into().into(),
    }))
}

fn expiry(identity: &Identity) -> Instant {
    let left = identity.expires_at - chrono::Utc::now().timestamp();
    Instant::now() + Duration::from_secs(u64::try_from(left.max(0)).unwrap_or(0))
}

/// The frames of a running operation, the `complete` frame last (marked `true`).
type Frames = futures_util::stream::BoxStream<'static, (String, bool)>;

/// Counts a running subscription in the metrics, by root field.
struct Tracked(&'static str);

impl Tracked {
    fn start(field: &str) -> Option<Self> {
        // Bounded labels: only the schema's own subscription fields.
        let field = *STATE_SUBSCRIPTIONS
            .iter()
            .chain(EVENT_SUBSCRIPTIONS)
            .find(|known| **known == field)?;
        metrics::gauge!("rally_subscriptions_active", "field" => field).increment(1.0);
        Some(Self(field))
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        metrics::gauge!("rally_subscriptions_active", "field" => self.0).decrement(1.0);
    }
}

/// One websocket connection's protocol state.
struct Connection<'a> {
    sockets: &'a Sockets,
    legacy: bool,
    addr: ClientAddr,
    /// Set by `connection_init`.
    viewer: Option<Viewer>,
    /// The signed-in user, whose token's expiry ends the connection.
    identity: Option<Identity>,
    running: StreamMap<String, Frames>,
    /// One permit per operation whose work runs, including queries and mutations the client
    /// completed that are still finishing.
    permits: Arc<Semaphore>,
    /// Operations started ([`STARTS_BURST`], then [`STARTS_PER_SECOND`]).
    starts: DefaultDirectRateLimiter,
}

/// What handling one client frame leads to.
enum Step {
    Continue,
    Close(u16, String),
    Left,
}

type Sink = SplitSink<WebSocket, Message>;

impl Connection<'_> {
    /// Runs the connection to its end; returns the close code it ended with (1000 when the client
    /// left).
    async fn serve(mut self, socket: WebSocket) -> u16 {
        let settings = self.sockets.settings;
        let (mut sink, mut source) = socket.split();
        // One timer for whichever deadline applies: `connection_init` before it arrived, then the
        // access token's expiry (none for anonymous sockets). Long-lived timers and a long-lived
        // shutdown wait keep a delivery from re-registering anything shared between sockets.
        let deadline = sleep_until(Instant::now() + settings.init_timeout);
        tokio::pin!(deadline);
        let mut expires = true;
        let mut keepalive = tokio::time::interval(settings.keepalive);
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        keepalive.tick().await;
        // Anything from the client (a frame, or the pong every client answers a ping with) shows
        // it is there; a client silent for `silent_periods` keep-alive periods missed pings and is
        // gone (a dropped phone leaves a connection that accepts writes for many minutes).
        let mut heard = Instant::now();
        let mut shutdown = self.sockets.shutdown.clone();
        let stopping = async move {
            let _ = shutdown.wait_for(|stopping| *stopping).await;
        };
        tokio::pin!(stopping);
        // Wakes on every ended session (rare); the socket closes if it was its own.
        let mut ended = self.sockets.app.tokens.revocations().watch();
        let ping = if self.legacy {
            r#"{"type":"ka"}"#
        } else {
            r#"{"type":"ping"}"#
        };

        let code = loop {
            tokio::select! {
                incoming = source.next() => {
                    heard = Instant::now();
                    let step = match incoming {
                        Some(Ok(Message::Text(text))) => self.handle(text.as_bytes(), &mut sink).await,
                        Some(Ok(Message::Binary(bytes))) => self.handle(&bytes, &mut sink).await,
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => Step::Continue,
                        Some(Ok(Message::Close(_))) => break 1000,
                        Some(Err(err)) if too_big(&err) => {
                            let _ = write(&mut sink, close(CLOSE_TOO_BIG, "Message too big")).await;
                            break CLOSE_TOO_BIG;
                        }
                        Some(Err(_)) | None => break 1006,
                    };
                    match step {
                        Step::Continue => {
                            if self.viewer.is_some() {
                                expires = self.identity.is_some();
                                if let Some(identity) = &self.identity {
                                    deadline.as_mut().reset(expiry(identity));
                                }
                            }
                        }
                        Step::Close(code, reason) => {
                            let _ = write(&mut sink, close(code, reason)).await;
                            break code;
                        }
                        Step::Left => break 1000,
                    }
                }
                Some((id, (frame, last))) = self.running.next(), if !self.running.is_empty() => {
                    if last {
                        // Gone before the client reads `complete`, so it may reuse the id at once.
                        self.running.remove(&id);
                    }
                    if !write(&mut sink, Message::Text(frame.into())).await {
                        break 1006;
                    }
                }
                () = &mut deadline, if expires => {
                    if self.viewer.is_none() {
                        let _ = write(&mut sink, close(CLOSE_INIT_TIMEOUT, "Connection initialisation timeout")).await;
                        break CLOSE_INIT_TIMEOUT;
                    }
                    let _ = write(&mut sink, close(CLOSE_FORBIDDEN, "Forbidden: access token expired")).await;
                    break CLOSE_FORBIDDEN;
                }
                Ok(()) = ended.changed(), if self.identity.is_some() => {
                    if self.session_ended() {
                        let _ = write(&mut sink, close(CLOSE_FORBIDDEN, "Forbidden: session ended")).await;
                        break CLOSE_FORBIDDEN;
                    }
                }
                _ = keepalive.tick(), if self.viewer.is_some() => {
                    if settings.silent_periods > 0
                        && heard.elapsed() >= settings.keepalive * settings.silent_periods
                    {
                        let _ = write(&mut sink, close(CLOSE_GOING_AWAY, "no answer to pings")).await;
                        break CLOSE_GOING_AWAY;
                    }
                    // The protocol's own keep-alive, then a websocket ping, which every client
                    // answers (the legacy protocol's `ka` has no answer).
                    if !write(&mut sink, Message::Text(ping.into())).await
                        || !write(&mut sink, Message::Ping(Default::default())).await
                    {
                        break 1006;
                    }
                }
                () = &mut stopping => {
                    let _ = write(&mut sink, close(CLOSE_RESTART, "server restarting; reconnect")).await;
                    break CLOSE_RESTART;
                }
            }
        };
        let _ = tokio::time::timeout(WRITE_TIMEOUT, sink.close()).await;
        code
    }

    /// Refuses operation `id` with RATE_LIMITED (`what`), then `complete`: written at once, never
    /// queued, so a client flooding refused operations is answered as fast as it sends, and holds
    /// nothing.
    async fn refuse(&mut self, sink: &mut Sink, id: &str, what: &'static str) -> Step {
        let refused = Payload::error(Error::RateLimited {
            what,
            retry_after_seconds: 1,
        });
        match send(sink, self.frame_prefix(id) + &refused.json + "}").await {
            Step::Continue => send(sink, complete_frame(id)).await,
            stop => stop,
        }
    }

    /// Whether the session the socket was opened with, or the one of the fresh token that extended
    /// it, has ended (logout, or a replayed refresh token).
    fn session_ended(&self) -> bool {
        let revocations = self.sockets.app.tokens.revocations();
        let opened = match &self.viewer {
            Some(Viewer::User(identity)) => identity.session_id,
            _ => None,
        };
        let current = self.identity.and_then(|identity| identity.session_id);
        [opened, current]
            .into_iter()
            .flatten()
            .any(|session| revocations.is_revoked(session))
    }

    /// Handles one client frame.
    async fn handle(&mut self, bytes: &[u8], sink: &mut Sink) -> Step {
        let Ok(frame) = serde_json::from_slice::<ClientFrame>(bytes) else {
            return Step::Close(CLOSE_INVALID, "Invalid message received".into());
        };
        match frame {
            ClientFrame::ConnectionInit { payload } => {
                if self.viewer.is_some() {
                    return Step::Close(
                        CLOSE_TOO_MANY_INITS,
                        "Too many initialisation requests".into(),
                    );
                }
                if credentials(payload.as_ref()) == Credentials::Unreadable {
                    return refuse_init(
                        self.legacy,
                        sink,
                        CLOSE_INVALID,
                        "Invalid connection_init payload",
                    )
                    .await;
                }
                let viewer = viewer_of(payload.as_ref(), &self.sockets.app.tokens);
                match &viewer {
                    Viewer::Invalid => {
                        return refuse_init(
                            self.legacy,
                            sink,
                            CLOSE_FORBIDDEN,
                            "Forbidden: invalid access token",
                        )
                        .await;
                    }
                    Viewer::User(identity) => self.identity = Some(*identity),
                    Viewer::Anonymous => {}
                }
                self.viewer = Some(viewer);
                send(sink, r#"{"type":"connection_ack"}"#.to_owned()).await
            }
            ClientFrame::Subscribe { id, mut payload } => {
                let Some(viewer) = &self.viewer else {
                    return Step::Close(CLOSE_UNAUTHORIZED, "Unauthorized".into());
                };
                if id.len() > MAX_ID_BYTES {
                    return Step::Close(
                        CLOSE_INVALID,
                        format!("An operation id is at most {MAX_ID_BYTES} bytes"),
                    );
                }
                if self.starts.check().is_err() {
                    return self
                        .refuse(sink, &id, "too many operations started on this connection")
                        .await;
                }
                let restarted = self.running.contains_key(&id);
                if restarted {
                    if !self.legacy {
                        // The id is not echoed: a close reason must fit in 123 bytes.
                        return Step::Close(
                            CLOSE_DUPLICATE_ID,
                            "Subscriber for this id already exists".into(),
                        );
                    }
                    // The legacy protocol restarts an operation under its id: its server stops the
                    // running one (as `stop` would, without a `complete`) and starts the new one.
                    self.running.remove(&id);
                }
                let Some(permit) = permit(self.permits.clone(), restarted).await else {
                    return self
                        .refuse(
                            sink,
                            &id,
                            "too many subscriptions and operations running on this connection",
                        )
                        .await;
                };
                let kind = payload.kind();
                let tracked = kind.field().and_then(Tracked::start);
                let payloads: Payloads = self
                    .sockets
                    .fanout
                    .run(payload, &kind, viewer, self.addr, permit);
                let frames = self.frames(&id, payloads, tracked);
                self.running.insert(id, frames);
                Step::Continue
            }
            ClientFrame::Complete { id } => {
                if self.running.remove(&id).is_some() {
                    return send(sink, complete_frame(&id)).await;
                }
                Step::Continue
            }
            ClientFrame::Ping { payload } => {
                // A fresh token of the same user with the same role extends the connection; a
                // changed role needs a new connection (its operations run with the first token's).
                if let (Some(current), Viewer::User(fresh)) = (
                    self.identity,
                    viewer_of(payload.as_ref(), &self.sockets.app.tokens),
                ) && fresh.user_id == current.user_id
                    && fresh.is_admin == current.is_admin
                {
                    self.identity = Some(fresh);
                }
                if self.legacy {
                    return Step::Continue;
                }
                send(sink, r#"{"type":"pong"}"#.to_owned()).await
            }
            ClientFrame::Pong {} => Step::Continue,
            ClientFrame::ConnectionTerminate => Step::Left,
        }
    }

    /// The frames of an operation: each payload in its `next` (or `data`) frame, then `complete`;
    /// a request error as the protocol's `error` frame, with nothing after it.
    fn frames(&self, id: &str, mut payloads: Payloads, tracked: Option<Tracked>) -> Frames {
        // The frame's head is made once; each payload only appends the shared bytes.
        let prefix = self.frame_prefix(id);
        let complete = complete_frame(id);
        let error = self.error_prefix(id);
        async_stream::stream! {
            let _tracked = tracked;
            while let Some(payload) = payloads.next().await {
                if let Some(errors) = payload.request_errors() {
                    yield (format!("{error}{errors}}}"), true);
                    return;
                }
                let mut frame = String::with_capacity(prefix.len() + payload.json.len() + 1);
                frame.push_str(&prefix);
                frame.push_str(&payload.json);
                frame.push('}');
                yield (frame, false);
            }
            yield (complete, true);
        }
        .boxed()
    }

    /// `{"type":"error","id":…,"payload":`: the errors and `}` follow.
    fn error_prefix(&self, id: &str) -> String {
        format!(r#"{{"type":"error","id":{},"payload":"#, json_string(id))
    }

    /// `{"type":"next","id":…,"payload":` (`data` on the legacy protocol): a payload and `}` follow.
    fn frame_prefix(&self, id: &str) -> String {
        let kind = if self.legacy { "data" } else { "next" };
        format!(r#"{{"type":"{kind}","id":{},"payload":"#, json_string(id))
    }
}

/// A permit for a new operation from a connection's `permits`, `None` at its cap. A restarted
/// operation takes the place of the one it stops, whose work may hold its permit a moment longer
/// (a task of its own notices that nobody reads it any more): for up to [`RESTART_WAIT`] it waits
/// for that permit rather than be refused as one too many.
async fn permit(permits: Arc<Semaphore>, restarted: bool) -> Option<Permit> {
    if !restarted {
        return permits.try_acquire_owned().ok();
    }
    tokio::time::timeout(RESTART_WAIT, permits.acquire_owned())
        .await
        .ok()?
        .ok()
}

/// How long a restarted operation (legacy protocol) waits for the permit of the one it stops.
const RESTART_WAIT: Duration = Duration::from_millis(250);

/// How long one frame may take to go out: a client that stops reading is dropped rather than
/// holding its connection (and its seats in shared executions) forever.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes `message`; false when the socket is gone or the client stopped reading.
async fn write(sink: &mut Sink, message: Message) -> bool {
    let mut sending = std::pin::pin!(sink.send(message));
    // Nearly every write completes at once; only one that has to wait gets a timer.
    match futures_util::poll!(sending.as_mut()) {
        Poll::Ready(result) => result.is_ok(),
        Poll::Pending => matches!(
            tokio::time::timeout(WRITE_TIMEOUT, sending).await,
            Ok(Ok(()))
        ),
    }
}

/// Refuses a `connection_init` by closing with `code`; the legacy protocol first says why in its
/// `connection_error` message, which its clients hand to the application (they do not read close
/// reasons).
async fn refuse_init(legacy: bool, sink: &mut Sink, code: u16, reason: &'static str) -> Step {
    if legacy {
        let error =
            serde_json::json!({ "type": "connection_error", "payload": { "message": reason } });
        let _ = write(sink, Message::Text(error.to_string().into())).await;
    }
    Step::Close(code, reason.into())
}

/// Writes a text frame from a handler.
async fn send(sink: &mut Sink, frame: String) -> Step {
    if write(sink, Message::Text(frame.into())).await {
        Step::Continue
    } else {
        Step::Left
    }
}

fn complete_frame(id: &str) -> String {
    format!(r#"{{"type":"complete","id":{}}}"#, json_string(id))
}

/// An operation id as a JSON string.
fn json_string(id: &str) -> String {
    serde_json::Value::from(id).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_any_of_three_keys() {
        for key in ["authorization", "Authorization", "token"] {
            let payload = serde_json::json!({ key: "Bearer x" });
            assert_eq!(credentials(Some(&payload)), Credentials::Given("Bearer x"));
        }
        assert_eq!(credentials(Some(&serde_json::json!({}))), Credentials::None);
        assert_eq!(credentials(None), Credentials::None);
        let number = serde_json::json!({ "authorization": 42 });
        assert_eq!(credentials(Some(&number)), Credentials::Malformed);
        let text = serde_json::json!("Bearer x");
        assert_eq!(credentials(Some(&text)), Credentials::Unreadable);
    }
}
