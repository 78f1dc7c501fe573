//! The naive fan-out baseline: a stock async-graphql subscription server, the way its examples
//! build one. async-graphql-axum's own websocket handling (with the same 4 KiB read buffer as
//! Rally), every subscriber's stream (the current version, then each new one) fed by one tokio
//! broadcast channel and executed on its own, and a `change` mutation that publishes the next
//! version. Run in its own process like Rally.

use std::sync::atomic::{AtomicI32, Ordering};

use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql::{Context, Object, Schema, SimpleObject, Subscription};
use async_graphql_axum::{GraphQL, GraphQLProtocol, GraphQLWebSocket};
use axum::extract::{State, WebSocketUpgrade};
use axum::response::Response;
use futures_util::{Stream, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::broadcast;

type NaiveSchema = Schema<Query, Mutation, Subscriber>;

/// What every subscriber gets: the version a change made.
#[derive(SimpleObject, Clone)]
struct Update {
    version: i32,
}

struct Changes {
    sender: broadcast::Sender<i32>,
    last: AtomicI32,
}

pub struct Query;

#[Object]
impl Query {
    async fn ping(&self) -> bool {
        true
    }
}

pub struct Mutation;

#[Object]
impl Mutation {
    /// Publishes the next version to every subscriber.
    async fn change(&self, ctx: &Context<'_>) -> i32 {
        let changes = ctx.data_unchecked::<Changes>();
        let version = changes.last.fetch_add(1, Ordering::Relaxed) + 1;
        let _ = changes.sender.send(version);
        version
    }
}

pub struct Subscriber;

#[Subscription]
impl Subscriber {
    /// The current version, then every new one (as Rally's state subscriptions start with the
    /// current state).
    async fn updated(&self, ctx: &Context<'_>) -> impl Stream<Item = Update> + use<> {
        let changes = ctx.data_unchecked::<Changes>();
        let receiver = changes.sender.subscribe();
        let current = Update {
            version: changes.last.load(Ordering::Relaxed),
        };
        let next = futures_util::stream::unfold(receiver, |mut receiver| async move {
            loop {
                match receiver.recv().await {
                    Ok(version) => return Some((Update { version }, receiver)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        futures_util::stream::once(async move { current }).chain(next)
    }
}

/// The subscription the bench follows on the baseline.
pub const UPDATED: &str = "subscription { updated { version } }";
/// The mutation that makes a change on the baseline.
pub const CHANGE: &str = "mutation { change }";

async fn websocket(
    State(schema): State<NaiveSchema>,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .read_buffer_size(4 * 1024)
        .on_upgrade(move |stream| GraphQLWebSocket::new(stream, schema, protocol).serve())
}

/// Serves the baseline on `port` (`/graphql` for HTTP, `/graphql/ws` for websockets).
pub async fn serve(port: u16) -> anyhow::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let (sender, _) = broadcast::channel(1024);
    let changes = Changes {
        sender,
        last: AtomicI32::new(0),
    };
    let schema = Schema::build(Query, Mutation, Subscriber)
        .data(changes)
        .finish();
    let app = axum::Router::new()
        .route_service("/graphql", GraphQL::new(schema.clone()))
        .route("/graphql/ws", axum::routing::get(websocket))
        .with_state(schema);
    Ok(axum::serve(listener, app).await?)
}
