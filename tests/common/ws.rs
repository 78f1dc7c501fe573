//! A websocket GraphQL client speaking either protocol, for tests.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The modern protocol (graphql-ws library, Apollo's GraphQLWsLink).
pub const TRANSPORT_WS: &str = "graphql-transport-ws";
/// The legacy protocol (subscriptions-transport-ws).
pub const LEGACY_WS: &str = "graphql-ws";

/// How long a test waits for any one message.
const WAIT: Duration = Duration::from_secs(10);

/// A connected websocket client.
pub struct WsClient {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    protocol: &'static str,
}

/// How a connection ended.
#[derive(Debug, PartialEq, Eq)]
pub struct Closed {
    /// Close code.
    pub code: u16,
    /// Close reason.
    pub reason: String,
}

impl WsClient {
    /// Connects to `url` (ws://…/graphql/ws) with `protocol`.
    pub async fn connect(url: &str, protocol: &'static str) -> Self {
        let mut request = url.into_client_request().expect("ws request");
        request
            .headers_mut()
            .insert("sec-websocket-protocol", protocol.parse().expect("header"));
        let (socket, response) = tokio_tungstenite::connect_async(request)
            .await
            .expect("ws connects");
        assert_eq!(response.headers()["sec-websocket-protocol"], protocol);
        Self { socket, protocol }
    }

    fn legacy(&self) -> bool {
        self.protocol == LEGACY_WS
    }

    /// Sends a JSON frame.
    pub async fn send(&mut self, frame: Value) {
        self.socket
            .send(Message::Text(frame.to_string().into()))
            .await
            .expect("ws send");
    }

    /// Sends `connection_init` with `payload` and expects the ack.
    pub async fn init(&mut self, payload: Value) {
        self.send(json!({ "type": "connection_init", "payload": payload }))
            .await;
        let ack = self.next_frame().await.expect("connection_ack");
        assert_eq!(ack["type"], "connection_ack", "{ack}");
    }

    /// Starts operation `id`.
    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        let kind = if self.legacy() { "start" } else { "subscribe" };
        self.send(json!({ "type": kind, "id": id, "payload": { "query": query, "variables": variables } }))
            .await;
    }

    /// Stops operation `id`.
    pub async fn unsubscribe(&mut self, id: &str) {
        let kind = if self.legacy() { "stop" } else { "complete" };
        self.send(json!({ "type": kind, "id": id })).await;
    }

    /// The next protocol frame that is not a keep-alive (server pings are answered); `Err` with the
    /// close code when the server closed instead.
    pub async fn next_frame(&mut self) -> Result<Value, Closed> {
        self.next_frame_within(WAIT).await
    }

    /// [`WsClient::next_frame`], waiting up to `wait` for each message.
    pub async fn next_frame_within(&mut self, wait: Duration) -> Result<Value, Closed> {
        loop {
            let message = tokio::time::timeout(wait, self.socket.next())
                .await
                .expect("a websocket message in time");
            match message {
                Some(Ok(Message::Text(text))) => {
                    let frame: Value = serde_json::from_str(text.as_str()).expect("JSON frame");
                    match frame["type"].as_str() {
                        Some("ka") | Some("pong") => continue,
                        Some("ping") => {
                            self.send(json!({ "type": "pong" })).await;
                            continue;
                        }
                        _ => return Ok(frame),
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = frame
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((u16::from(CloseCode::Status), String::new()));
                    return Err(Closed { code, reason });
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => {
                    return Err(Closed {
                        code: 1006,
                        reason: "abnormal".into(),
                    });
                }
            }
        }
    }

    /// The next `data` payload of operation `id` (`payload.data`), asserting no errors.
    pub async fn next_data(&mut self, id: &str) -> Value {
        let frame = self
            .next_frame()
            .await
            .unwrap_or_else(|closed| panic!("closed instead of data: {closed:?}"));
        let expected = if self.legacy() { "data" } else { "next" };
        assert_eq!(frame["type"], expected, "{frame}");
        assert_eq!(frame["id"], id, "{frame}");
        assert!(frame["payload"]["errors"].is_null(), "{frame}");
        frame["payload"]["data"].clone()
    }

    /// The next frame of operation `id`, whatever it is.
    pub async fn next_of(&mut self, id: &str) -> Value {
        let frame = self
            .next_frame()
            .await
            .unwrap_or_else(|closed| panic!("closed: {closed:?}"));
        assert_eq!(frame["id"], id, "{frame}");
        frame
    }

    /// Reads operation `id`'s frames up to its `complete` (data frames before it are skipped; any
    /// other frame fails the test).
    pub async fn until_complete(&mut self, id: &str) {
        loop {
            let frame = self.next_of(id).await;
            match frame["type"].as_str() {
                Some("complete") => return,
                Some("next") if frame["payload"]["errors"].is_null() => {}
                _ => panic!("before complete: {frame}"),
            }
        }
    }

    /// Waits for the server to close the socket.
    pub async fn closed(&mut self) -> Closed {
        loop {
            if let Err(closed) = self.next_frame().await {
                return closed;
            }
        }
    }

    /// Asserts nothing but keep-alives arrives within `quiet`.
    pub async fn assert_quiet(&mut self, quiet: Duration) {
        let frames = self.frames_within(quiet).await;
        assert!(frames.is_empty(), "expected silence, got {frames:?}");
    }

    /// Every frame but keep-alives that arrives within `within` (the socket must stay open).
    pub async fn frames_within(&mut self, within: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + within;
        let mut frames = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return frames;
            }
            match tokio::time::timeout(left, self.socket.next()).await {
                Err(_) => return frames,
                Ok(Some(Ok(Message::Text(text)))) => {
                    let frame: Value = serde_json::from_str(text.as_str()).expect("JSON");
                    match frame["type"].as_str() {
                        Some("ka") | Some("pong") => {}
                        Some("ping") => self.send(json!({ "type": "pong" })).await,
                        _ => frames.push(frame),
                    }
                }
                Ok(Some(Ok(_))) => {}
                Ok(other) => panic!("expected the socket open, got {other:?}"),
            }
        }
    }
}
