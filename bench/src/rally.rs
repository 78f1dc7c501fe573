//! Starting Rally (the release binary) and seeding it through its own API.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// A running Rally process.
pub struct Rally {
    pub child: Child,
    pub base: String,
    _dir: tempfile::TempDir,
}

impl Rally {
    /// Starts `bin` with the shared database and broker (if any) and `env` on top.
    pub async fn start(
        bin: &Path,
        database_url: Option<&str>,
        redis_url: Option<&str>,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        Self::launch(
            Command::new(bin),
            database_url,
            redis_url,
            env,
            Duration::from_secs(20),
        )
        .await
    }

    /// Starts Rally through `command`: the binary itself, or a tool (valgrind) given the binary as
    /// its last argument so far; waits `ready_within` for `/readyz`.
    pub async fn launch(
        mut command: Command,
        database_url: Option<&str>,
        redis_url: Option<&str>,
        env: &[(&str, &str)],
        ready_within: Duration,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        command
            .arg("serve")
            .env("RALLY_BIND", format!("127.0.0.1:{port}"))
            .env("RALLY_DATA_DIR", dir.path())
            .env("RALLY_LOG", "warn")
            .env("RALLY_AUTH_ATTEMPTS_PER_ADDRESS", "1000000")
            .stdout(Stdio::null())
            .kill_on_drop(true);
        if let Some(url) = database_url {
            command.env("RALLY_DATABASE_URL", url);
        }
        if let Some(url) = redis_url {
            command.env("RALLY_REDIS_URL", url);
        }
        command.envs(env.iter().copied());
        let child = command
            .spawn()
            .context("cannot start rally (cargo build --release first)")?;
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = std::time::Instant::now() + ready_within;
        while std::time::Instant::now() < deadline {
            if http
                .get(format!("{base}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(Self {
                    child,
                    base,
                    _dir: dir,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("rally did not become ready")
    }

    /// The GraphQL endpoint.
    pub fn url(&self) -> String {
        format!("{}/graphql", self.base)
    }

    /// The websocket endpoint.
    pub fn ws_url(&self) -> String {
        format!("{}/graphql/ws", self.base.replacen("http", "ws", 1))
    }

    /// The process id.
    pub fn pid(&self) -> anyhow::Result<u32> {
        self.child.id().context("rally exited")
    }

    /// Stops the process.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Runs one GraphQL operation; an `errors` entry is a failure.
pub async fn call(
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
        bail!("{query}: {body}");
    }
    Ok(body["data"].clone())
}

/// A user made through `signup`; returns the access token.
pub async fn signup(
    http: &reqwest::Client,
    url: &str,
    handle: &str,
    password: &str,
) -> anyhow::Result<String> {
    let data = call(
        http,
        url,
        None,
        "mutation($h: String!, $e: String!, $p: String!) { signup(input: { handle: $h, email: $e, password: $p }) { accessToken } }",
        json!({ "h": handle, "e": format!("{handle}@example.com"), "p": password }),
    )
    .await?;
    Ok(data["signup"]["accessToken"]
        .as_str()
        .context("token")?
        .to_owned())
}

/// What the seeded database holds.
pub struct Seed {
    pub token: String,
    pub event: String,
    pub session: String,
}

/// An organizer with 25 events, the last one LIVE with the organizer's own cup open. `tag` keeps
/// handles unique when several runs share one PostgreSQL database.
pub async fn seed(url: &str, tag: &str) -> anyhow::Result<Seed> {
    let http = reqwest::Client::new();
    let handle = format!("host_{tag}");
    let token = signup(&http, url, &handle, "benchmark-password").await?;
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
    // The organizer asks for their own cup, then hands it out with that code.
    let requested = call(
        &http,
        url,
        Some(&token),
        "mutation($id: ID!) { requestCupCode(eventId: $id) { code } }",
        json!({ "id": event }),
    )
    .await?;
    let code = requested["requestCupCode"]["code"]
        .as_str()
        .context("code")?
        .to_owned();
    let cup = call(
        &http,
        url,
        Some(&token),
        "mutation($id: ID!, $h: String!, $c: String!) { openCupSession(eventId: $id, handle: $h, code: $c) { id } }",
        json!({ "id": event, "h": handle, "c": code }),
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
