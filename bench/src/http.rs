//! HTTP scenarios: a fixed-concurrency load loop and the two baselines (bare axum, bare
//! async-graphql), each served by its own process like Rally.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use anyhow::bail;
use async_graphql::connection::{Connection, Edge};
use async_graphql::{EmptyMutation, EmptySubscription, ID, Object, Schema, SimpleObject};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

/// One scenario's figures.
pub struct Figures {
    pub requests: u64,
    pub errors: u64,
    pub per_second: f64,
    pub p50_us: u64,
    pub p99_us: u64,
}

impl Figures {
    fn failed() -> Self {
        Self {
            requests: 0,
            errors: 1,
            per_second: 0.0,
            p50_us: 0,
            p99_us: 0,
        }
    }
}

pub const TRIVIAL: &str = r#"{"query":"{ __typename }"}"#;

struct BareQuery;

/// An organizer as the engine baseline's list shows it (the fields Rally's list scenario selects).
#[derive(SimpleObject, Clone)]
#[graphql(name = "User")]
struct BareUser {
    handle: String,
    display_name: String,
}

/// An event of the engine baseline's list.
#[derive(SimpleObject, Clone)]
#[graphql(name = "Event")]
struct BareEvent {
    id: ID,
    title: String,
    organizer: BareUser,
}

/// The 20 events the engine baseline's list serves: what Rally's seed makes, held in memory.
static EVENTS: LazyLock<Vec<BareEvent>> = LazyLock::new(|| {
    (0..20)
        .map(|n| BareEvent {
            id: ID(format!("0192f3a4-5b6c-7d8e-9f00-{n:012x}")),
            title: format!("Bench night {n}"),
            organizer: BareUser {
                handle: format!("bench_organizer_{n}"),
                display_name: format!("Bench organizer {n}"),
            },
        })
        .collect()
});

#[Object]
impl BareQuery {
    async fn ping(&self) -> bool {
        true
    }

    /// The same shape as Rally's `events(first: 20)` (a Relay connection of events with their
    /// organizers), built from memory on every request: what the engine alone costs for the list
    /// scenario's response, with no database, loader or authorization.
    async fn events(&self, first: Option<i32>) -> Connection<String, BareEvent> {
        let first = usize::try_from(first.unwrap_or(20).clamp(0, 100)).unwrap_or(0);
        let mut connection = Connection::new(false, first < EVENTS.len());
        connection.edges.extend(
            EVENTS
                .iter()
                .take(first)
                .map(|event| Edge::new(format!("v1:{}", event.id.as_str()), event.clone())),
        );
        connection
    }
}

/// Starts a baseline in its own process (as Rally runs in its own), so every server under test
/// competes with the load generator the same way; returns its URL and the child.
pub async fn baseline(kind: &str) -> anyhow::Result<(String, Child)> {
    baseline_through(
        Command::new(std::env::current_exe()?),
        kind,
        Duration::from_secs(5),
    )
    .await
}

/// Starts baseline `kind` through `command` (this program, or a tool given this program as its last
/// argument so far) and waits up to `wait` for it to answer.
pub async fn baseline_through(
    mut command: Command,
    kind: &str,
    wait: Duration,
) -> anyhow::Result<(String, Child)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = command
        .args(["--serve-baseline", kind, "--port", &port.to_string()])
        .kill_on_drop(true)
        .spawn()?;
    let url = format!("http://127.0.0.1:{port}/graphql");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if http
            .post(&url)
            .header("content-type", "application/json")
            .body(TRIVIAL)
            .send()
            .await
            .is_ok()
        {
            return Ok((url, child));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bail!("baseline {kind} did not start")
}

pub async fn bare_axum(port: u16) -> anyhow::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let app = axum::Router::new().route(
        "/graphql",
        axum::routing::post(|| async {
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                r#"{"data":{"__typename":"Query"}}"#,
            )
        }),
    );
    Ok(axum::serve(listener, app).await?)
}

pub async fn bare_engine(port: u16) -> anyhow::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let schema = Schema::new(BareQuery, EmptyMutation, EmptySubscription);
    let app =
        axum::Router::new().route_service("/graphql", async_graphql_axum::GraphQL::new(schema));
    Ok(axum::serve(listener, app).await?)
}

/// One keep-alive HTTP/1.1 connection per loop, driven with hyper directly: the load generator
/// shares the machine with the server, so the less CPU it spends per request the more of the
/// server's own cost the figures show.
pub async fn connection(url: &http::Uri) -> anyhow::Result<http1::SendRequest<Full<Bytes>>> {
    let host = url.host().unwrap_or("127.0.0.1");
    let port = url.port_u16().unwrap_or(80);
    let tcp = tokio::net::TcpStream::connect((host, port)).await?;
    tcp.set_nodelay(true)?;
    let (sender, driver) = http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(driver);
    Ok(sender)
}

/// Sends `body` to `url` from `concurrency` loops for `duration`.
pub async fn load(
    url: &str,
    body: String,
    token: Option<String>,
    concurrency: usize,
    duration: Duration,
) -> Figures {
    load_cycled(url, vec![body], token, concurrency, duration).await
}

/// [`load`] with several bodies: each loop sends them in turn, starting at its own.
pub async fn load_cycled(
    url: &str,
    bodies: Vec<String>,
    token: Option<String>,
    concurrency: usize,
    duration: Duration,
) -> Figures {
    let Ok(uri) = url.parse::<http::Uri>() else {
        return Figures::failed();
    };
    if bodies.is_empty() {
        return Figures::failed();
    }
    let bodies: std::sync::Arc<[Bytes]> = bodies.into_iter().map(Bytes::from).collect();
    let authorization = token.map(|token| format!("Bearer {token}"));
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let workers = (0..concurrency).map(|worker| {
        let (uri, bodies, authorization) = (uri.clone(), bodies.clone(), authorization.clone());
        tokio::spawn(async move {
            let mut turn = worker;
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let Ok(mut sender) = connection(&uri).await else {
                return (latencies, 1);
            };
            let host = uri
                .authority()
                .map_or("127.0.0.1", |a| a.as_str())
                .to_owned();
            while Instant::now() < deadline {
                let sent = Instant::now();
                let mut request = http::Request::post(uri.path())
                    .header(http::header::HOST, &host)
                    .header(http::header::CONTENT_TYPE, "application/json");
                if let Some(authorization) = &authorization {
                    request = request.header(http::header::AUTHORIZATION, authorization);
                }
                let body = bodies[turn % bodies.len()].clone();
                turn += 1;
                let Ok(request) = request.body(Full::new(body)) else {
                    errors += 1;
                    break;
                };
                let ok = match sender.send_request(request).await {
                    Ok(response) if response.status().is_success() => {
                        match response.into_body().collect().await {
                            Ok(collected) => {
                                let bytes = collected.to_bytes();
                                !bytes.windows(9).any(|w| w == b"\"errors\":")
                            }
                            Err(_) => false,
                        }
                    }
                    _ => false,
                };
                if ok {
                    latencies.push(u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX));
                } else {
                    errors += 1;
                    // A broken connection is replaced; an error answer keeps it.
                    if sender.is_closed() {
                        match connection(&uri).await {
                            Ok(fresh) => sender = fresh,
                            Err(_) => break,
                        }
                    }
                }
            }
            (latencies, errors)
        })
    });
    let mut latencies = Vec::new();
    let mut errors = 0;
    for worker in futures_util::future::join_all(workers)
        .await
        .into_iter()
        .flatten()
    {
        latencies.extend(worker.0);
        errors += worker.1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    Figures {
        requests: latencies.len() as u64,
        errors,
        per_second: latencies.len() as f64 / elapsed,
        p50_us: at(0.50),
        p99_us: at(0.99),
    }
}

/// One loop per worker, each running `attempt(worker)` until `duration` is over: successful
/// attempts per second, and the failures, in all.
pub async fn loops_per_second<W, F, Fut>(
    workers: Vec<W>,
    duration: Duration,
    attempt: F,
) -> anyhow::Result<(f64, u64)>
where
    W: Clone + Send + 'static,
    F: Fn(W) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    let (done, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let started = Instant::now();
    let deadline = started + duration;
    let loops: Vec<_> = workers
        .into_iter()
        .map(|worker| {
            let (attempt, done, failed) = (attempt.clone(), done.clone(), failed.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let counter = if attempt(worker.clone()).await {
                        &done
                    } else {
                        &failed
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for worker in loops {
        worker.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok((
        done.load(Ordering::Relaxed) as f64 / elapsed,
        failed.load(Ordering::Relaxed),
    ))
}
