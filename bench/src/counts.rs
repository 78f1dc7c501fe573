//! Instruction counts of the hot paths: figures that do not move with the machine's load as
//! timings do, so a change can be judged against the last committed count.
//!
//! Each server (the bare engine, the naive fan-out server, Rally) runs under valgrind's callgrind.
//! After a warm-up its counters are zeroed (`callgrind_control --zero`), a fixed number of requests
//! is sent one after another on one keep-alive connection (or a fixed number of changes is fanned
//! out to a fixed number of subscribers, each change awaited by all of them before the next), and
//! the counters are dumped (`callgrind_control --dump`); then an idle window as long is counted the
//! same way and subtracted, so the server's own timers (session polls, the job loop) are not charged
//! to the requests. A figure is the instructions the server executed, all its threads together, per
//! request or per delivery, in the steady state (every cache warm): the request's whole path in the
//! server (kernel work is not counted). Rally runs on its embedded SQLite, so the database's work is
//! counted too. The dumps are kept, so `callgrind_annotate` shows where each scenario's
//! instructions go.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Requests sent (one after another) before the counters are zeroed.
pub const WARM_UP: usize = 50;

/// Whether valgrind (with callgrind_control) can be run.
pub async fn valgrind_installed() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .status()
        .await
        .is_ok_and(|status| status.success())
}

/// One scenario's count.
pub struct Count {
    /// What ran.
    pub name: String,
    /// Requests or deliveries counted.
    pub operations: u64,
    /// Instructions the server executed per operation, its background work taken out.
    pub per_operation: f64,
    /// The share of the window's instructions that was background work (timers, polls), counted in
    /// an idle window as long as the work's and subtracted.
    pub background: f64,
    /// The callgrind dump it came from.
    pub dump: PathBuf,
}

/// A process under callgrind, whose counters are zeroed and dumped on demand.
pub struct Callgrind {
    pid: u32,
    out: PathBuf,
    dumps: u32,
}

impl Callgrind {
    /// `valgrind --tool=callgrind` running `program`, its dumps written to `out` (`out.1`, …).
    pub fn command(program: &Path, out: &Path) -> Command {
        let mut command = Command::new("valgrind");
        command
            .arg("--tool=callgrind")
            .arg(format!("--callgrind-out-file={}", out.display()))
            .arg("--log-file=/dev/null")
            .arg(program);
        command
    }

    /// Follows the callgrind process `pid` whose dumps go to `out`.
    pub fn follow(pid: u32, out: &Path) -> Self {
        Self {
            pid,
            out: out.to_owned(),
            dumps: 0,
        }
    }

    /// Zeroes the counters.
    pub async fn zero(&self) -> anyhow::Result<()> {
        control(&["--zero", &self.pid.to_string()]).await
    }

    /// Dumps the counters since the last zero; returns the instructions counted and the dump.
    pub async fn dump(&mut self, label: &str) -> anyhow::Result<(u64, PathBuf)> {
        // callgrind_control hands the label to a shell: letters, digits and underscores only.
        let label: String = label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        control(&[&format!("--dump={label}"), &self.pid.to_string()]).await?;
        self.dumps += 1;
        let path = PathBuf::from(format!("{}.{}", self.out.display(), self.dumps));
        let text = tokio::fs::read_to_string(&path)
            .await
            .with_context(|| format!("callgrind wrote no {}", path.display()))?;
        let total = text
            .lines()
            .find_map(|line| {
                line.strip_prefix("totals:")
                    .or_else(|| line.strip_prefix("summary:"))
            })
            .and_then(|n| n.trim().parse().ok())
            .with_context(|| format!("no totals in {}", path.display()))?;
        Ok((total, path))
    }

    /// Zeroes, runs `work` (which performs `operations` operations), dumps, and divides.
    pub async fn count<F, Fut>(
        &mut self,
        name: &str,
        operations: u64,
        work: F,
    ) -> anyhow::Result<Count>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<()>>,
    {
        self.zero().await?;
        let started = std::time::Instant::now();
        work().await?;
        let busy = started.elapsed();
        let (total, dump) = self.dump(name).await?;
        // The server's own timers run meanwhile; an idle window as long says how much they did.
        self.zero().await?;
        tokio::time::sleep(busy).await;
        let (idle, _) = self.dump(&format!("{name} idle")).await?;
        Ok(Count {
            name: name.to_owned(),
            operations,
            per_operation: total.saturating_sub(idle) as f64 / operations.max(1) as f64,
            background: idle as f64 / total.max(1) as f64,
            dump,
        })
    }
}

async fn control(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("callgrind_control")
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .await
        .context("callgrind_control (valgrind) is not installed")?;
    if !status.success() {
        bail!("callgrind_control {args:?} failed");
    }
    Ok(())
}

/// A bench baseline (`--serve-baseline kind`) under callgrind; its URL, the child and its counters.
pub async fn baseline(kind: &str, dir: &Path) -> anyhow::Result<(String, Child, Callgrind)> {
    let out = dir.join(format!("{kind}.callgrind"));
    let command = Callgrind::command(&std::env::current_exe()?, &out);
    let (url, child) =
        crate::http::baseline_through(command, kind, Duration::from_secs(60)).await?;
    let pid = child.id().context("the baseline exited")?;
    Ok((url, child, Callgrind::follow(pid, &out)))
}

/// Sends `body` `n` times, one after another on one connection; an error answer is a failure.
pub async fn requests(
    http: &reqwest::Client,
    url: &str,
    body: &str,
    token: Option<&str>,
    n: usize,
) -> anyhow::Result<()> {
    for _ in 0..n {
        let mut request = http
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let answer = request.send().await?.text().await?;
        if answer.contains("\"errors\":") {
            bail!("{body}: {answer}");
        }
    }
    Ok(())
}

/// Counts `n` requests of `body` after a warm-up.
pub async fn count_requests(
    server: &mut Callgrind,
    name: &str,
    url: &str,
    body: &str,
    token: Option<&str>,
    n: usize,
) -> anyhow::Result<Count> {
    let http = reqwest::Client::new();
    requests(&http, url, body, token, WARM_UP).await?;
    server
        .count(name, n as u64, || requests(&http, url, body, token, n))
        .await
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// `n` graphql-transport-ws subscribers of `query`, each past its first payload (the current state).
pub async fn subscribers(
    ws_url: &str,
    query: &str,
    variables: &Value,
    key: &str,
    n: usize,
) -> anyhow::Result<Vec<(Socket, i64)>> {
    let subscribe = json!({
        "type": "subscribe",
        "id": "1",
        "payload": { "query": query, "variables": variables },
    })
    .to_string();
    let mut sockets = Vec::with_capacity(n);
    for _ in 0..n {
        let mut request = ws_url.into_client_request()?;
        request.headers_mut().insert(
            "sec-websocket-protocol",
            "graphql-transport-ws".parse().context("header")?,
        );
        let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
        socket
            .send(Message::text(r#"{"type":"connection_init","payload":{}}"#))
            .await?;
        socket.send(Message::text(subscribe.as_str())).await?;
        let first = next_counter(&mut socket, key).await?;
        sockets.push((socket, first));
    }
    Ok(sockets)
}

/// The counter of the next `next` payload on `socket`.
async fn next_counter(socket: &mut Socket, key: &str) -> anyhow::Result<i64> {
    let wait = Duration::from_secs(120);
    loop {
        let message = tokio::time::timeout(wait, socket.next())
            .await
            .context("no payload within 120 s")?;
        match message {
            Some(Ok(Message::Text(text))) if text.contains(r#""type":"next""#) => {
                return crate::live::counter(&text, key)
                    .with_context(|| format!("no {key} in {text}"));
            }
            Some(Ok(_)) => {}
            other => bail!("the subscription ended: {other:?}"),
        }
    }
}

/// Makes `changes` changes with `change`, each awaited by every subscriber before the next.
pub async fn fan_out<F, Fut>(
    sockets: &mut [(Socket, i64)],
    key: &str,
    changes: u32,
    change: F,
) -> anyhow::Result<()>
where
    F: Fn(u32) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    for k in 1..=changes {
        change(k).await?;
        for (socket, last) in sockets.iter_mut() {
            let seen = next_counter(socket, key).await?;
            if seen <= *last {
                bail!("a subscriber saw {seen} after {last}");
            }
            *last = seen;
        }
    }
    Ok(())
}

/// The top `lines` functions of `dump` by their own instructions (`callgrind_annotate`, callees
/// not included), or why there is no profile.
pub async fn profile(dump: &Path, lines: usize) -> String {
    let output = Command::new("callgrind_annotate")
        .arg("--threshold=100")
        .arg(dump)
        .output()
        .await;
    match output {
        Ok(output) if output.status.success() => String::from_utf8_lossy(&output.stdout)
            .lines()
            .skip_while(|line| !line.contains("file:function"))
            .take(lines + 2)
            // Paths of the build machine say nothing about the code.
            .map(|line| line.split(" [/").next().unwrap_or(line))
            .collect::<Vec<_>>()
            .join("\n"),
        Ok(output) => format!(
            "callgrind_annotate failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(err) => format!("callgrind_annotate: {err}"),
    }
}
