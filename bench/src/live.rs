//! Websocket scenarios: how fast N subscribers connect, what an idle subscribed socket costs the
//! server, and how a change fans out to all of them (commit-to-arrival latency, server CPU per
//! delivery, missed deliveries).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// A subscription the bench follows, and how to tell which change a payload shows.
pub struct Watched {
    /// Name in the report.
    pub name: &'static str,
    /// The subscription document.
    pub query: &'static str,
    /// Its variables.
    pub variables: Value,
    /// The JSON key whose number grows by one with each change (`"version":` or `"cheers":`).
    pub counter: &'static str,
}

/// What one fan-out run measured.
pub struct FanoutFigures {
    pub subscribers: usize,
    pub changes: u32,
    pub connect_seconds: f64,
    pub rss_per_socket_bytes: f64,
    pub received: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    pub cpu_us_per_delivery: f64,
    pub user_us_per_delivery: f64,
    pub system_us_per_delivery: f64,
}

impl FanoutFigures {
    pub fn expected(&self) -> u64 {
        self.subscribers as u64 * u64::from(self.changes)
    }
}

/// The number after `key` in `text`.
pub fn counter(text: &str, key: &str) -> Option<i64> {
    let start = text.find(key)? + key.len();
    let digits: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '-')
        .collect();
    digits.parse().ok()
}

/// Server CPU time (user + system) of `pid`, in µs.
pub fn cpu_us(pid: u32) -> anyhow::Result<u64> {
    Ok(user_us(pid)? + system_us(pid)?)
}

/// User CPU time of `pid`, in µs.
pub fn user_us(pid: u32) -> anyhow::Result<u64> {
    stat_ticks_us(pid, 11)
}

/// System CPU time of `pid` (the kernel working for it: on loopback, sending also carries much of
/// the receiving side's work), in µs.
pub fn system_us(pid: u32) -> anyhow::Result<u64> {
    stat_ticks_us(pid, 12)
}

/// Field `index` (counted after the parenthesised name) of `/proc/{pid}/stat`, in clock ticks, as µs.
fn stat_ticks_us(pid: u32, index: usize) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').context("stat format")?.1;
    let field = rest.split_whitespace().nth(index).context("stat format")?;
    // /proc counts in USER_HZ, which the Linux ABI fixes at 100 per second.
    Ok(field.parse::<u64>()? * 10_000)
}

/// CPU time (user + system) of every process named `postgres` on this machine (the server and its
/// backends), in µs; a process that ends meanwhile takes its time with it.
pub fn postgres_cpu_us() -> u64 {
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return 0;
    };
    processes
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|name| name.trim_end() == "postgres")
        })
        .filter_map(|pid| cpu_us(pid).ok())
        .sum()
}

/// `figure` of every process in `pids`, added up.
pub fn sum(pids: &[u32], figure: fn(u32) -> anyhow::Result<u64>) -> anyhow::Result<u64> {
    pids.iter().map(|&pid| figure(pid)).sum()
}

/// Resident memory of `pid`, in bytes.
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("VmRSS")?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .context("VmRSS value")?
        .parse()?;
    Ok(kib * 1024)
}

/// What a subscriber reports to the run.
enum Report {
    Acked,
    Subscribed,
}

/// One subscriber: connects, initialises, subscribes, then notes the arrival of every change.
async fn subscriber(
    url: String,
    subscribe: Arc<String>,
    key: &'static str,
    connects: Arc<Semaphore>,
    reports: mpsc::UnboundedSender<Report>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<Vec<(i64, Instant)>> {
    let mut request = url.into_client_request()?;
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().context("header")?,
    );
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let permit = connects.acquire().await?;
    let (mut socket, _) =
        tokio_tungstenite::connect_async_with_config(request, Some(config), true).await?;
    socket
        .send(Message::text(r#"{"type":"connection_init","payload":{}}"#))
        .await?;
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) if text.contains("connection_ack") => break,
            Some(Ok(_)) => {}
            _ => bail!("closed before connection_ack"),
        }
    }
    drop(permit);
    let _ = reports.send(Report::Acked);
    socket.send(Message::text(subscribe.as_str())).await?;
    let mut base = None;
    let mut arrivals = Vec::new();
    loop {
        tokio::select! {
            message = socket.next() => {
                let Some(Ok(message)) = message else { break };
                let Message::Text(text) = message else { continue };
                if !text.contains(r#""type":"next""#) {
                    continue;
                }
                let at = Instant::now();
                let Some(value) = counter(&text, key) else { continue };
                match base {
                    None => {
                        base = Some(value);
                        let _ = reports.send(Report::Subscribed);
                    }
                    Some(base) => arrivals.push((value - base, at)),
                }
            }
            _ = stop.wait_for(|stop| *stop) => break,
        }
    }
    let _ = socket.close(None).await;
    Ok(arrivals)
}

/// Connects `subscribers` clients to `watched`, makes `changes` changes with `change(k)` spaced by
/// `spacing`, and measures. `pids` are the server's processes (their CPU and memory are summed).
pub async fn fanout<F, Fut>(
    ws_url: &str,
    pids: &[u32],
    watched: &Watched,
    subscribers: usize,
    changes: u32,
    spacing: Duration,
    change: F,
) -> anyhow::Result<FanoutFigures>
where
    F: Fn(u32) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let subscribe = Arc::new(
        json!({
            "type": "subscribe",
            "id": "1",
            "payload": { "query": watched.query, "variables": watched.variables },
        })
        .to_string(),
    );
    let rss_before = sum(pids, rss_bytes)?;
    let connects = Arc::new(Semaphore::new(256));
    let (reports, mut reported) = mpsc::unbounded_channel();
    let (stop, stopped) = watch::channel(false);
    let started = Instant::now();
    let clients: Vec<_> = (0..subscribers)
        .map(|_| {
            tokio::spawn(subscriber(
                ws_url.to_owned(),
                subscribe.clone(),
                watched.counter,
                connects.clone(),
                reports.clone(),
                stopped.clone(),
            ))
        })
        .collect();
    drop(reports);
    let (mut acked, mut subscribed) = (0, 0);
    let mut connect_seconds = f64::NAN;
    let deadline = Instant::now() + Duration::from_secs(120);
    while subscribed < subscribers {
        let report = tokio::time::timeout_at(deadline.into(), reported.recv())
            .await
            .with_context(|| format!("{}: {acked} acked, {subscribed} subscribed", watched.name))?;
        match report {
            Some(Report::Acked) => {
                acked += 1;
                if acked == subscribers {
                    connect_seconds = started.elapsed().as_secs_f64();
                }
            }
            Some(Report::Subscribed) => subscribed += 1,
            None => bail!(
                "{}: subscribers failed ({acked} acked, {subscribed} subscribed)",
                watched.name
            ),
        }
    }
    // Let the server settle (buffers of the set-up freed) before reading its memory.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = sum(pids, rss_bytes)?;

    let (user_before, system_before) = (sum(pids, user_us)?, sum(pids, system_us)?);
    let mut sent = Vec::with_capacity(changes as usize + 1);
    sent.push(Instant::now());
    for k in 1..=changes {
        sent.push(Instant::now());
        change(k).await?;
        tokio::time::sleep(spacing).await;
    }
    // Wait for stragglers: every subscriber has what it will get once deliveries stop growing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (user_after, system_after) = (sum(pids, user_us)?, sum(pids, system_us)?);
    let _ = stop.send(true);

    let mut latencies = Vec::with_capacity(subscribers * changes as usize);
    for client in clients {
        for (k, at) in client.await?? {
            if let Some(sent) = usize::try_from(k)
                .ok()
                .filter(|k| (1..sent.len()).contains(k))
                .map(|k| sent[k])
            {
                latencies
                    .push(u64::try_from(at.duration_since(sent).as_micros()).unwrap_or(u64::MAX));
            }
        }
    }
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let received = latencies.len() as u64;
    Ok(FanoutFigures {
        subscribers,
        changes,
        connect_seconds,
        rss_per_socket_bytes: (rss_after as f64 - rss_before as f64) / subscribers as f64,
        received,
        p50_us: at(0.50),
        p99_us: at(0.99),
        max_us: latencies.last().copied().unwrap_or(0),
        cpu_us_per_delivery: (user_after + system_after - user_before - system_before) as f64
            / received.max(1) as f64,
        user_us_per_delivery: (user_after - user_before) as f64 / received.max(1) as f64,
        system_us_per_delivery: (system_after - system_before) as f64 / received.max(1) as f64,
    })
}
