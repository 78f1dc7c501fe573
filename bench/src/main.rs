//! Rally's load generator. It starts Rally itself (the release binary, embedded defaults or the
//! PostgreSQL/Redis URLs it is given), seeds data, measures HTTP throughput and latency against two
//! baselines started in the same run on the same loopback set-up (a bare axum handler returning the
//! same bytes, and a bare async-graphql schema), prints a table with ratios and targets, and writes it
//! to `bench/results/<date>-<set-up>.md`.
//!
//! `cargo build --release && cargo run -p bench --release -- [--duration 10] [--database-url …]`
//!
//! Measured so far: the HTTP figures. Fan-out, memory per socket, auth under load and scale-out are
//! listed as not measured yet.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};
use clap::Parser;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

/// Load generator for Rally.
#[derive(Parser)]
struct Args {
    /// Seconds each scenario runs.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Concurrent requests in flight.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// The Rally binary to start.
    #[arg(long, default_value = "target/release/rally")]
    rally_bin: PathBuf,
    /// PostgreSQL URL (default: Rally's embedded SQLite).
    #[arg(long)]
    database_url: Option<String>,
    /// Redis URL (default: in-process broker).
    #[arg(long)]
    redis_url: Option<String>,
    /// Where results are written.
    #[arg(long, default_value = "bench/results")]
    out_dir: PathBuf,
    /// Internal: serve one baseline (`axum` or `engine`) on `--port` instead of measuring.
    #[arg(long, hide = true)]
    serve_baseline: Option<String>,
    /// Internal: the baseline's port.
    #[arg(long, hide = true, default_value_t = 0)]
    port: u16,
}

/// One scenario's figures.
struct Figures {
    requests: u64,
    errors: u64,
    per_second: f64,
    p50_us: u64,
    p99_us: u64,
}

const TRIVIAL: &str = r#"{"query":"{ __typename }"}"#;

struct BareQuery;

#[Object]
impl BareQuery {
    async fn ping(&self) -> bool {
        true
    }
}

/// Starts a baseline in its own process (as Rally runs in its own), so every server under test
/// competes with the load generator the same way; returns its URL and the child.
async fn baseline(kind: &str) -> anyhow::Result<(String, Child)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = Command::new(std::env::current_exe()?)
        .args(["--serve-baseline", kind, "--port", &port.to_string()])
        .kill_on_drop(true)
        .spawn()?;
    let url = format!("http://127.0.0.1:{port}/graphql");
    let http = reqwest::Client::new();
    for _ in 0..200 {
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

async fn bare_axum(port: u16) -> anyhow::Result<()> {
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

async fn bare_engine(port: u16) -> anyhow::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let schema = Schema::new(BareQuery, EmptyMutation, EmptySubscription);
    let app =
        axum::Router::new().route_service("/graphql", async_graphql_axum::GraphQL::new(schema));
    Ok(axum::serve(listener, app).await?)
}

struct Rally {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

async fn start_rally(args: &Args) -> anyhow::Result<Rally> {
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut command = Command::new(&args.rally_bin);
    command
        .arg("serve")
        .env("RALLY_BIND", format!("127.0.0.1:{port}"))
        .env("RALLY_DATA_DIR", dir.path())
        .env("RALLY_LOG", "warn")
        .env("RALLY_AUTH_ATTEMPTS_PER_ADDRESS", "100000")
        .stdout(Stdio::null())
        .kill_on_drop(true);
    if let Some(url) = &args.database_url {
        command.env("RALLY_DATABASE_URL", url);
    }
    if let Some(url) = &args.redis_url {
        command.env("RALLY_REDIS_URL", url);
    }
    let child = command.spawn().with_context(|| {
        format!(
            "cannot start {} (cargo build --release first)",
            args.rally_bin.display()
        )
    })?;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(Rally {
                child,
                base,
                _dir: dir,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("rally did not become ready")
}

async fn call(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    query: &str,
    variables: Value,
) -> anyhow::Result<Value> {
    let mut request = http
        .post(url)
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let body: Value = request.send().await?.json().await?;
    if body.get("errors").is_some() {
        bail!("seeding failed: {body}");
    }
    Ok(body["data"].clone())
}

/// What the seeded database holds.
struct Seed {
    token: String,
    event: String,
    session: String,
}

async fn seed(url: &str) -> anyhow::Result<Seed> {
    let http = reqwest::Client::new();
    let signup = call(
        &http,
        url,
        None,
        "mutation { signup(input: { handle: \"bench_host\", email: \"bench@example.com\", password: \"benchmark-password\" }) { accessToken } }",
        json!({}),
    )
    .await?;
    let token = signup["signup"]["accessToken"]
        .as_str()
        .context("token")?
        .to_owned();
    let mut event = String::new();
    for n in 0..25 {
        let created = call(
            &http,
            url,
            Some(&token),
            "mutation($t: String!) { createEvent(input: { title: $t, startsAt: \"2030-01-01T20:00:00Z\" }) { id } }",
            json!({ "t": format!("Bench event {n}") }),
        )
        .await?;
        event = created["createEvent"]["id"]
            .as_str()
            .context("id")?
            .to_owned();
    }
    call(
        &http,
        url,
        Some(&token),
        "mutation($id: ID!) { updateEvent(id: $id, input: { status: LIVE }) { id } }",
        json!({ "id": event }),
    )
    .await?;
    let cup = call(
        &http,
        url,
        Some(&token),
        "mutation($id: ID!) { openCupSession(eventId: $id, handle: \"bench_host\") { id } }",
        json!({ "id": event }),
    )
    .await?;
    let session = cup["openCupSession"]["id"]
        .as_str()
        .context("session")?
        .to_owned();
    Ok(Seed {
        token,
        event,
        session,
    })
}

/// Sends `body` to `url` from `concurrency` loops for `duration`.
async fn load(
    url: &str,
    body: String,
    token: Option<String>,
    concurrency: usize,
    duration: Duration,
) -> Figures {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap_or_default();
    let body = Arc::new(body);
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let workers = (0..concurrency).map(|_| {
        let (http, body, token, url) = (http.clone(), body.clone(), token.clone(), url.to_owned());
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let sent = Instant::now();
                let mut request = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.as_str().to_owned());
                if let Some(token) = &token {
                    request = request.bearer_auth(token);
                }
                match request.send().await {
                    Ok(response) if response.status().is_success() => {
                        match response.bytes().await {
                            Ok(bytes) if !bytes.windows(9).any(|w| w == b"\"errors\":") => {
                                latencies.push(
                                    u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX),
                                );
                            }
                            _ => errors += 1,
                        }
                    }
                    _ => errors += 1,
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.serve_baseline.as_deref() {
        Some("axum") => return bare_axum(args.port).await,
        Some("engine") => return bare_engine(args.port).await,
        Some(other) => bail!("unknown baseline {other}"),
        None => {}
    }
    let duration = Duration::from_secs(args.duration);
    let setup = match (&args.database_url, &args.redis_url) {
        (None, None) => "sqlite",
        (Some(_), None) => "postgres",
        (None, Some(_)) => "sqlite-redis",
        (Some(_), Some(_)) => "postgres-redis",
    };
    let (axum_url, _axum) = baseline("axum").await?;
    let (engine_url, _engine) = baseline("engine").await?;
    let mut rally = start_rally(&args).await?;
    let rally_url = format!("{}/graphql", rally.base);
    let seed = seed(&rally_url).await?;

    let read = json!({ "query": "query($id: ID!) { event(id: $id) { title likeCount organizer { handle } } }", "variables": { "id": seed.event } }).to_string();
    let list = json!({ "query": "{ events(first: 20) { edges { node { id title organizer { handle displayName } } } } }" }).to_string();
    let cheers = json!({ "query": "mutation($s: ID!) { recordCheers(sessionId: $s) { cheers } }", "variables": { "s": seed.session } }).to_string();
    let c = args.concurrency;
    let bare = load(&axum_url, TRIVIAL.to_owned(), None, c, duration).await;
    let engine = load(&engine_url, TRIVIAL.to_owned(), None, c, duration).await;
    let rows = [
        (
            "`{ __typename }`",
            load(&rally_url, TRIVIAL.to_owned(), None, c, duration).await,
            Some(1.0),
        ),
        (
            "authenticated `event(id)` read",
            load(&rally_url, read, Some(seed.token.clone()), c, duration).await,
            Some(0.5),
        ),
        (
            "`events(first: 20)` with organizer",
            load(&rally_url, list, None, c, duration).await,
            None,
        ),
        (
            "`recordCheers` mutation",
            load(&rally_url, cheers, Some(seed.token.clone()), c, duration).await,
            None,
        ),
    ];
    let _ = rally.child.kill().await;

    let mut out = String::new();
    out.push_str(&format!(
        "# Rally bench, {} ({setup})\n\nCommand: `cargo run -p bench --release -- --duration {} --concurrency {c}{}`  \nMachine: {} cores, loopback; the load generator, each baseline and Rally run as separate processes on the same machine.\n\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        args.duration,
        args.database_url.as_ref().map(|_| " --database-url …").unwrap_or(""),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
    ));
    out.push_str("| scenario | req/s | p50 µs | p99 µs | errors | x bare axum | x bare engine | target | result |\n|---|---|---|---|---|---|---|---|---|\n");
    let line = |name: &str, f: &Figures, target: Option<f64>| {
        let vs_engine = f.per_second / engine.per_second;
        let (target_text, result) = match target {
            Some(t) => (
                format!(">= {t:.1}x engine"),
                if vs_engine >= t { "PASS" } else { "FAIL" },
            ),
            None => ("report".to_owned(), "-"),
        };
        format!(
            "| {name} | {:.0} | {} | {} | {} | {:.2} | {:.2} | {target_text} | {result} |\n",
            f.per_second,
            f.p50_us,
            f.p99_us,
            f.errors,
            f.per_second / bare.per_second,
            vs_engine,
        )
    };
    out.push_str(&line("baseline: bare axum, same bytes", &bare, None));
    out.push_str(&line("baseline: bare async-graphql", &engine, None));
    for (name, figures, target) in &rows {
        out.push_str(&line(name, figures, *target));
        if figures.requests == 0 {
            eprintln!("warning: {name} completed no request");
        }
    }
    out.push_str("\nNot measured yet: websocket fan-out (1,000 / 10,000 subscribers), RSS per idle socket, logins/s and `{ __typename }` p99 under login load, cross-instance fan-out latency.\n");
    print!("{out}");
    std::fs::create_dir_all(&args.out_dir)?;
    let path = args.out_dir.join(format!(
        "{}-{setup}.md",
        chrono::Utc::now().format("%Y-%m-%d")
    ));
    std::fs::write(&path, &out)?;
    eprintln!("written to {}", path.display());
    Ok(())
}
