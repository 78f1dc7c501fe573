//! Rally's load generator. It starts Rally itself (the release binary, with embedded defaults or the
//! PostgreSQL/Redis URLs it is given), seeds data through the API, measures, prints a table with
//! ratios and targets, and writes it to `bench/results/<date>-<set-up>.md`.
//!
//! `cargo build --release && cargo run -p bench --release -- [--duration 5] [--database-url …]
//! [--redis-url …]`
//!
//! - HTTP: requests/s, latency and CPU per request of four operations at fixed concurrency, against
//!   two baselines measured in the same run (a bare axum handler returning the same bytes, a bare
//!   async-graphql schema), each in its own process like Rally; beside them, the bare schema serving
//!   the list's shape from memory (what the engine alone costs for that response; reported).
//! - Websockets (a fresh Rally): connection set-up and server memory per idle subscribed socket,
//!   then fan-out of changes to 10,000 and 1,000 subscribers of a leaderboard and of `eventUpdated`.
//! - Auth (a fresh Rally, the configured argon2 cost): logins/s and the `{ __typename }` p99 while
//!   they run.
//! - Scale-out (with both PostgreSQL and Redis; `scripts/install-cluster-tools` first): two Rally
//!   instances behind nginx sharing PostgreSQL, Redis and an S3 server (`scripts/cluster`); fan-out
//!   through nginx, then logins/s and avatar uploads/s of the embedded defaults, one PostgreSQL
//!   instance, a cluster instance (limits in Redis, media on S3) and nginx, in interleaved rounds.
//! - Meetings (fresh instances, argon2 at its cheapest since only sign-ups hash): 64 users booking
//!   1,000 slots of one owner (bookings/s, latency, CONFLICTs); 50 users racing for one slot, five
//!   times (exactly one winner, 49 CONFLICT; time to the last answer); `availabilities` search
//!   over 100,284 seeded slots against `{ __typename }` in the same run (and the seeding time).
//!
//! - Proximity (fresh instances): 1,000 activities each watching 10 of 10,000 phones that send one
//!   update a second for 30 s; updates accepted per second, update-to-screen and update-to-alert
//!   latency, server CPU per update; with PostgreSQL and Redis, again with the phones on one
//!   instance and the screens on another.
//!
//! - Runs (a fresh instance): `saveRun` of 10,000-point tracks, GPX import of ~2 MB files with the
//!   server's peak RSS, and `territories` over 100,000 cells beside `{ __typename }`.
//!
//! - Counts (valgrind): instructions per request of `{ __typename }` (Rally and the bare engine), the
//!   authenticated read, `events(first: 20)` (Rally, and the bare engine serving the same shape from
//!   memory), `recordCheers`, and per fan-out delivery (Rally and the naive server), counted under
//!   callgrind so they do not move with the machine's load.
//!
//! `--only http,counts,live,auth,scale-out,meetings,proximity,runs` picks parts, e.g. `cargo run -p bench --release --
//! --only meetings`.

mod auth;
mod cluster;
mod counts;
mod http;
mod live;
mod media;
mod meetings;
mod naive;
mod proximity;
mod rally;
mod runs;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::json;

use crate::cluster::Cluster;
use crate::http::{Figures, TRIVIAL, baseline, load};
use crate::live::{FanoutFigures, Watched};
use crate::rally::{Rally, Seed, call, seed};

/// Load generator for Rally.
#[derive(Parser)]
struct Args {
    /// Seconds each HTTP scenario runs.
    #[arg(long, default_value_t = 5)]
    duration: u64,
    /// Interleaved rounds of each HTTP scenario and its baselines.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Concurrent HTTP requests in flight.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Websocket subscriber counts to fan out to.
    #[arg(long, value_delimiter = ',', default_value = "10000,1000")]
    subscribers: Vec<usize>,
    /// Changes made per fan-out scenario (spaced 250 ms apart).
    #[arg(long, default_value_t = 20)]
    changes: u32,
    /// Users logging in at once in the auth scenario.
    #[arg(long, default_value_t = 16)]
    logins: usize,
    /// The Rally binary to start.
    #[arg(long, default_value = "target/release/rally")]
    rally_bin: PathBuf,
    /// PostgreSQL URL (default: Rally's embedded SQLite).
    #[arg(long)]
    database_url: Option<String>,
    /// Redis URL (default: in-process broker); with `--database-url`, also runs scale-out.
    #[arg(long)]
    redis_url: Option<String>,
    /// Activities in the proximity part (each watches 10 phones sending one update a second).
    #[arg(long, default_value_t = 1000)]
    proximity_activities: usize,
    /// Seconds the phones send in the proximity part.
    #[arg(long, default_value_t = 30)]
    proximity_seconds: u64,
    /// Only these parts (http, counts, live, auth, scale-out, meetings, proximity, runs); all by default.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
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

impl Args {
    fn runs(&self, part: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| p == part)
    }

    async fn rally(&self, env: &[(&str, &str)]) -> anyhow::Result<Rally> {
        Rally::start(
            &self.rally_bin,
            self.database_url.as_deref(),
            self.redis_url.as_deref(),
            env,
        )
        .await
    }
}

fn ms(us: u64) -> String {
    format!("{:.1}", us as f64 / 1000.0)
}

fn verdict(pass: bool) -> &'static str {
    if pass { "PASS" } else { "FAIL" }
}

/// The HTTP table: every scenario and both baselines in interleaved rounds (bare axum, the bare
/// engine, then each of Rally's scenarios; every other round in the reverse order, so a machine
/// that slows or speeds up during the run does not always favour the same side), so a ratio
/// compares loads measured seconds apart; each ratio is the median of its per-round ratios, with
/// their spread.
async fn http_part(args: &Args, tag: &str, out: &mut String) -> anyhow::Result<()> {
    let duration = Duration::from_secs(args.duration);
    let c = args.concurrency;
    let (axum_url, axum) = baseline("axum").await?;
    let (engine_url, engine) = baseline("engine").await?;
    let rally = args.rally(&[]).await?;
    let url = rally.url();
    let seed = seed(&url, tag).await?;
    let axum_pid = axum.id().context("the bare axum baseline exited")?;
    let engine_pid = engine.id().context("the bare engine baseline exited")?;
    let rally_pid = rally.pid()?;
    // The database server's own CPU is counted when it runs on this machine (its processes are
    // named `postgres`); the embedded SQLite's is in Rally's.
    let database_cpu = args
        .database_url
        .is_some()
        .then_some(live::postgres_cpu_us as fn() -> u64);
    if database_cpu.is_some_and(|cpu| cpu() == 0) {
        eprintln!("note: no `postgres` process visible here; the database's CPU will read 0");
    }

    let read = json!({ "query": READ, "variables": { "id": seed.event } }).to_string();
    let list = json!({ "query": LIST }).to_string();
    let cheers = json!({ "query": CHEERS, "variables": { "s": seed.session } }).to_string();
    let scenario =
        |name, url: &str, pid, body: &str, token: Option<&str>, target: Option<Target>| Scenario {
            name,
            url: url.to_owned(),
            pid,
            body: body.to_owned(),
            token: token.map(str::to_owned),
            target,
        };
    let token = Some(seed.token.as_str());
    let scenarios = [
        scenario(
            "baseline: bare axum, same bytes",
            &axum_url,
            axum_pid,
            TRIVIAL,
            None,
            None,
        ),
        scenario(
            "baseline: bare async-graphql",
            &engine_url,
            engine_pid,
            TRIVIAL,
            None,
            None,
        ),
        scenario(ENGINE_LIST, &engine_url, engine_pid, &list, None, None),
        scenario(
            "`{ __typename }`",
            &url,
            rally_pid,
            TRIVIAL,
            None,
            Some(Target::median(1.0)),
        ),
        scenario(
            "authenticated `event(id)` read",
            &url,
            rally_pid,
            &read,
            token,
            Some(Target::every_round(0.5)),
        ),
        scenario(
            LIST_SCENARIO,
            &url,
            rally_pid,
            &list,
            None,
            Some(Target::median(0.25)),
        ),
        scenario(
            "`recordCheers` mutation",
            &url,
            rally_pid,
            &cheers,
            token,
            None,
        ),
    ];
    let mut rounds: Vec<Vec<Figures>> = scenarios.iter().map(|_| Vec::new()).collect();
    // CPU µs per request of each round: the server's, and the database server's.
    let mut cpu: Vec<Vec<(f64, f64)>> = scenarios.iter().map(|_| Vec::new()).collect();
    for round in 0..args.rounds.max(1) {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..scenarios.len()).collect()
        } else {
            (0..scenarios.len()).rev().collect()
        };
        for n in order {
            let s = &scenarios[n];
            let server_before = live::cpu_us(s.pid)?;
            let database_before = database_cpu.map_or(0, |cpu| cpu());
            let figures = load(&s.url, s.body.clone(), s.token.clone(), c, duration).await;
            let requests = figures.requests.max(1) as f64;
            let server = live::cpu_us(s.pid)?.saturating_sub(server_before) as f64 / requests;
            let database = database_cpu.map_or(0, |cpu| cpu().saturating_sub(database_before))
                as f64
                / requests;
            cpu[n].push((server, database));
            rounds[n].push(figures);
        }
    }
    rally.stop().await;

    let _ = writeln!(
        out,
        "## HTTP ({c} concurrent requests; {} interleaved rounds of {}s per scenario, every other round in reverse order; medians, and the spread of each ratio over the rounds)\n\nCPU per request: the server process's user + system time over the requests it answered{}. x engine by CPU: the bare engine's CPU per request over the scenario's, in the same round (higher is cheaper; the targets are on the throughput ratio, x bare engine).\n\n| scenario | req/s | p50 µs | p99 µs | errors | CPU µs/request | x engine by CPU | x bare axum | x bare engine | spread | target | result |\n|---|---|---|---|---|---|---|---|---|---|---|---|",
        args.rounds.max(1),
        args.duration,
        if database_cpu.is_some() {
            ", then the database server's (every `postgres` process on this machine)"
        } else {
            " (the embedded SQLite's work included)"
        },
    );
    let mut lowest_rounds = Vec::new();
    for (n, Scenario { name, target, .. }) in scenarios.iter().enumerate() {
        let per_round = |baseline: usize| -> Vec<f64> {
            rounds[n]
                .iter()
                .zip(&rounds[baseline])
                .map(|(f, b)| f.per_second / b.per_second.max(f64::MIN_POSITIVE))
                .collect()
        };
        let (vs_bare, _) = median_and_spread(per_round(0));
        let (vs_engine, spread) = median_and_spread(per_round(1));
        let (target_text, result) = match target {
            Some(t) => {
                let judged = t.judged(per_round(1));
                if t.every_round {
                    lowest_rounds.push(format!("{name} {judged:.2}x"));
                }
                (t.text(), verdict(judged >= t.at_least))
            }
            None => ("report".to_owned(), "-"),
        };
        let middle = median_round(&rounds[n]);
        let errors: u64 = rounds[n].iter().map(|f| f.errors).sum();
        let (server_cpu, _) = median_and_spread(cpu[n].iter().map(|c| c.0).collect());
        let uses_database = scenarios[n].pid == rally_pid;
        let cpu_text = if database_cpu.is_some() && uses_database {
            let (database, _) = median_and_spread(cpu[n].iter().map(|c| c.1).collect());
            format!("{server_cpu:.1} + {database:.1}")
        } else {
            format!("{server_cpu:.1}")
        };
        // The engine's CPU per request over this scenario's (Rally's with its database's), round
        // by round: like the throughput ratios, higher is better.
        let (cpu_vs_engine, _) = median_and_spread(
            cpu[n]
                .iter()
                .zip(&cpu[1])
                .map(|(c, engine)| {
                    let spent = c.0 + if uses_database { c.1 } else { 0.0 };
                    engine.0 / spent.max(f64::MIN_POSITIVE)
                })
                .collect(),
        );
        let _ = writeln!(
            out,
            "| {name} | {:.0} | {} | {} | {errors} | {cpu_text} | {cpu_vs_engine:.2} | {vs_bare:.2} | {vs_engine:.2} | {:.0}%{} | {target_text} | {result} |",
            middle.per_second,
            middle.p50_us,
            middle.p99_us,
            spread * 100.0,
            if spread > 0.10 { " (wide)" } else { "" },
        );
        if rounds[n].iter().any(|f| f.requests == 0) {
            eprintln!("warning: {name} completed no request in a round");
        }
    }
    if !lowest_rounds.is_empty() {
        let _ = writeln!(
            out,
            "\nLowest round x bare engine, for the targets judged on every round: {}.",
            lowest_rounds.join(", ")
        );
    }
    // The list against the engine serving the same response: how much of its cost is Rally's.
    let index = |wanted: &str| scenarios.iter().position(|s| s.name == wanted);
    if let (Some(list), Some(engine_list)) = (index(LIST_SCENARIO), index(ENGINE_LIST)) {
        let (ratio, spread) = median_and_spread(
            rounds[list]
                .iter()
                .zip(&rounds[engine_list])
                .map(|(f, b)| f.per_second / b.per_second.max(f64::MIN_POSITIVE))
                .collect(),
        );
        let _ = writeln!(
            out,
            "\n{LIST_SCENARIO} against the bare engine serving the same response from memory (reported): {ratio:.2}x ({:.0}% spread{}).",
            spread * 100.0,
            if spread > 0.10 { ", wide" } else { "" },
        );
    }
    out.push('\n');
    Ok(())
}

/// One HTTP scenario: a body sent to a URL (served by process `pid`), and its target as a multiple
/// of the bare engine.
struct Scenario {
    name: &'static str,
    url: String,
    pid: u32,
    body: String,
    token: Option<String>,
    target: Option<Target>,
}

/// A scenario's target: at least `at_least` times the bare engine's rate, on the median of the
/// rounds (#14: "a target passes only when the median passes") or, as #14 asks of the
/// authenticated read, in every round.
#[derive(Clone, Copy)]
struct Target {
    at_least: f64,
    every_round: bool,
}

impl Target {
    fn median(at_least: f64) -> Self {
        Self {
            at_least,
            every_round: false,
        }
    }

    fn every_round(at_least: f64) -> Self {
        Self {
            at_least,
            every_round: true,
        }
    }

    /// The per-round ratio the verdict is made on: the median, or the lowest.
    fn judged(self, mut per_round: Vec<f64>) -> f64 {
        per_round.sort_by(f64::total_cmp);
        let at = if self.every_round {
            0
        } else {
            per_round.len() / 2
        };
        per_round.get(at).copied().unwrap_or(0.0)
    }

    fn text(self) -> String {
        let every = if self.every_round {
            ", every round"
        } else {
            ""
        };
        format!(">= {:.2}x engine{every}", self.at_least)
    }
}

/// The median of `values` and their spread ((max - min) / median).
fn median_and_spread(mut values: Vec<f64>) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let median = values.get(values.len() / 2).copied().unwrap_or(0.0);
    let spread = match (values.first(), values.last()) {
        (Some(low), Some(high)) if median > 0.0 => (high - low) / median,
        _ => 0.0,
    };
    (median, spread)
}

/// The round with the median rate (its latencies go with it).
fn median_round(rounds: &[Figures]) -> &Figures {
    let mut sorted: Vec<&Figures> = rounds.iter().collect();
    sorted.sort_by(|a, b| a.per_second.total_cmp(&b.per_second));
    sorted[sorted.len() / 2]
}

/// The HTTP scenarios' documents.
const READ: &str = "query($id: ID!) { event(id: $id) { title likeCount organizer { handle } } }";
const LIST: &str =
    "{ events(first: 20) { edges { node { id title organizer { handle displayName } } } } }";
/// The list scenario's name.
const LIST_SCENARIO: &str = "`events(first: 20)` with organizer";
/// The counts' baselines, by name.
const ENGINE_TRIVIAL: &str = "baseline: bare async-graphql `{ __typename }`";
const NAIVE_DELIVERY: &str = "naive baseline: one fan-out delivery";
/// The bare engine serving [`LIST`]'s shape from memory: the engine's own cost of that response.
const ENGINE_LIST: &str = "baseline: bare async-graphql, the same `events(first: 20)` from memory";
const CHEERS: &str = "mutation($s: ID!) { recordCheers(sessionId: $s) { cheers } }";
const UPDATE_TITLE: &str =
    "mutation($id: ID!, $t: String!) { updateEvent(id: $id, input: { title: $t }) { version } }";

/// Renames the seeded event (one change to its `eventUpdated` subscribers).
async fn retitle(
    http: &reqwest::Client,
    url: &str,
    seed: &Seed,
    title: String,
) -> anyhow::Result<()> {
    call(
        http,
        url,
        Some(&seed.token),
        UPDATE_TITLE,
        json!({ "id": seed.event, "t": title }),
    )
    .await?;
    Ok(())
}

const LEADERBOARD: &str = "subscription($id: ID!) { leaderboard(eventId: $id, first: 10) { updatedAt entries { rank score cheers user { handle displayName } } } }";
const EVENT_UPDATED: &str =
    "subscription($id: ID!) { eventUpdated(eventId: $id) { id title likeCount status version } }";

fn fanout_row(
    out: &mut String,
    name: &str,
    f: &FanoutFigures,
    first_at_scale: bool,
    naive: Option<&FanoutFigures>,
) {
    let at_scale = f.subscribers >= 10_000;
    let missed = f.expected().saturating_sub(f.received);
    let mut targets = vec![format!("missed 0: {}", verdict(missed == 0))];
    let ratios = naive.map(|naive| {
        (
            f.cpu_us_per_delivery / naive.cpu_us_per_delivery.max(f64::MIN_POSITIVE),
            f.p99_us as f64 / naive.p99_us.max(1) as f64,
        )
    });
    if at_scale {
        if let Some((cpu, p99)) = ratios {
            targets.push(format!("CPU <= 0.4x naive: {}", verdict(cpu <= 0.4)));
            targets.push(format!("p99 <= 0.5x naive: {}", verdict(p99 <= 0.5)));
        }
        targets.push(format!(
            "connect < 3 s: {}",
            verdict(f.connect_seconds < 3.0)
        ));
    }
    if at_scale && first_at_scale {
        targets.push(format!(
            "RSS <= 12 KiB: {}",
            verdict(f.rss_per_socket_bytes <= 12.0 * 1024.0)
        ));
    }
    let _ = writeln!(
        out,
        "| {name} | {} | {:.2} | {:.1} | {}/{} | {missed} | {} | {} | {} | {:.2} ({:.2} + {:.2}) | {} | {} |",
        f.subscribers,
        f.connect_seconds,
        f.rss_per_socket_bytes / 1024.0,
        f.received,
        f.expected(),
        ms(f.p50_us),
        ms(f.p99_us),
        ms(f.max_us),
        f.cpu_us_per_delivery,
        f.user_us_per_delivery,
        f.system_us_per_delivery,
        ratios.map_or("-".to_owned(), |(cpu, p99)| format!("{cpu:.2}x, {p99:.2}x")),
        targets.join("; "),
    );
}

/// The naive baseline's fan-out of `changes` to `subscribers`, in its own process.
async fn naive_fanout(args: &Args, subscribers: usize) -> anyhow::Result<FanoutFigures> {
    let (url, server) = baseline("fanout").await?;
    let pid = server.id().context("the naive baseline exited")?;
    let http = reqwest::Client::new();
    let watched = Watched {
        name: "naive",
        query: naive::UPDATED,
        variables: json!({}),
        counter: "\"version\":",
    };
    let change = |_k: u32| {
        let (http, url) = (&http, &url);
        async move {
            call(http, url, None, naive::CHANGE, json!({})).await?;
            Ok(())
        }
    };
    let ws_url = format!("{}/ws", url.replacen("http", "ws", 1));
    let figures = live::fanout(
        &ws_url,
        &[pid],
        &watched,
        subscribers,
        args.changes,
        Duration::from_millis(250),
        change,
    )
    .await;
    drop(server);
    figures
}

/// The websocket table: set-up, memory and fan-out on one fresh instance.
async fn live_part(args: &Args, tag: &str, out: &mut String) -> anyhow::Result<()> {
    // Keep-alive pings every 2 minutes, so the CPU counted is the fan-out's; subscribers that sit
    // unread through a long measurement (under valgrind) are not taken for gone.
    let rally = args
        .rally(&[
            ("RALLY_WS_KEEPALIVE_SECONDS", "120"),
            ("RALLY_WS_SILENT_PERIODS", "0"),
        ])
        .await?;
    let url = rally.url();
    let seed = seed(&url, tag).await?;
    let http = reqwest::Client::new();
    let pid = rally.pid()?;
    let watched = [
        Watched {
            name: "leaderboard",
            query: LEADERBOARD,
            variables: json!({ "id": seed.event }),
            counter: "\"cheers\":",
        },
        Watched {
            name: "eventUpdated",
            query: EVENT_UPDATED,
            variables: json!({ "id": seed.event }),
            counter: "\"version\":",
        },
    ];
    let _ = writeln!(
        out,
        "## Websockets (graphql-transport-ws, {} changes 250 ms apart per row)\n\nLatency runs from the writer sending the mutation (so it includes the commit) to the frame's arrival at each subscriber; the leaderboard adds its 75 ms coalescing window by design. CPU is the server's user+system time over the changes divided by deliveries (user + system beside it: on loopback the kernel's send path also carries the receiving side's work). RSS is the server's growth from before the first connection to all sockets subscribed and idle, per socket (measured on the first 10,000 row, on a fresh instance). The naive baseline is a stock async-graphql server (async-graphql-axum's websocket handler, the same 4 KiB read buffer, every subscriber fed by one tokio broadcast channel and executed on its own), driven by the same client with the same subscriber count and changes; Rally's targets at 10,000 are ratios against it.\n\n| subscription | subscribers | connect s | RSS KiB/socket | delivered | missed | p50 ms | p99 ms | max ms | CPU µs/delivery (user + system) | x naive (CPU, p99) | targets |\n|---|---|---|---|---|---|---|---|---|---|---|---|",
        args.changes
    );
    let mut first = true;
    for &subscribers in &args.subscribers {
        // The naive server first, on the same client, subscriber count and changes.
        let naive = naive_fanout(args, subscribers).await?;
        fanout_row(
            out,
            "naive baseline: stock async-graphql, broadcast channel",
            &naive,
            false,
            None,
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        for watched in &watched {
            let change = |k: u32| {
                let (http, url, seed) = (&http, &url, &seed);
                let name = watched.name;
                async move {
                    if name == "leaderboard" {
                        call(
                            http,
                            url,
                            Some(&seed.token),
                            CHEERS,
                            json!({ "s": seed.session }),
                        )
                        .await?;
                    } else {
                        retitle(http, url, seed, format!("Live {k}")).await?;
                    }
                    Ok(())
                }
            };
            let figures = live::fanout(
                &rally.ws_url(),
                &[pid],
                watched,
                subscribers,
                args.changes,
                Duration::from_millis(250),
                change,
            )
            .await?;
            fanout_row(out, watched.name, &figures, first, Some(&naive));
            first = false;
            // Let the closed sockets go before the next row.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    rally.stop().await;
    out.push('\n');
    Ok(())
}

/// The auth table, on a fresh instance with the configured argon2 cost.
async fn auth_part(args: &Args, tag: &str, out: &mut String) -> anyhow::Result<()> {
    let rally = args
        .rally(&[("RALLY_AUTH_ATTEMPTS_PER_LOGIN", "1000000")])
        .await?;
    let figures =
        auth::logins_under_load(&rally, tag, args.logins, Duration::from_secs(args.duration))
            .await?;
    rally.stop().await;
    let ratio = figures.loaded.p99_us as f64 / figures.idle.p99_us.max(1) as f64;
    let _ = writeln!(
        out,
        "## Auth under load (argon2id at Rally's defaults: 19 MiB, 2 passes; {} users logging in in a loop)\n\n| figure | value | target | result |\n|---|---|---|---|\n| logins/s | {:.1} ({} errors) | report | - |\n| `{{ __typename }}` p99 idle (4 concurrent) | {} µs | | |\n| `{{ __typename }}` p99 during logins | {} µs | <= 3x idle | {} ({ratio:.2}x) |\n",
        args.logins,
        figures.logins_per_second,
        figures.login_errors,
        figures.idle.p99_us,
        figures.loaded.p99_us,
        verdict(ratio <= 3.0),
    );
    Ok(())
}

/// Requests (or deliveries) counted per scenario under callgrind.
const COUNTED_REQUESTS: usize = 200;
const COUNTED_SUBSCRIBERS: usize = 100;
const COUNTED_CHANGES: u32 = 10;

/// Instruction counts of the hot paths under callgrind (see `counts`), with the inclusive profile
/// of each of Rally's scenarios.
async fn counts_part(args: &Args, tag: &str, out: &mut String) -> anyhow::Result<()> {
    // The dumps stay for `callgrind_annotate` (not committed: bench/results/callgrind is ignored).
    let dumps = args.out_dir.join("callgrind");
    std::fs::create_dir_all(&dumps)?;
    let dir = tempfile::tempdir_in(&dumps)?.keep();
    let mut counted = Vec::new();

    let (axum_url, axum, mut axum_counter) = counts::baseline("axum", dir.as_path()).await?;
    counted.push(
        counts::count_requests(
            &mut axum_counter,
            "baseline: bare axum, same bytes",
            &axum_url,
            TRIVIAL,
            None,
            COUNTED_REQUESTS,
        )
        .await?,
    );
    drop(axum);
    let (engine_url, engine, mut engine_counter) =
        counts::baseline("engine", dir.as_path()).await?;
    counted.push(
        counts::count_requests(
            &mut engine_counter,
            ENGINE_TRIVIAL,
            &engine_url,
            TRIVIAL,
            None,
            COUNTED_REQUESTS,
        )
        .await?,
    );
    let list = json!({ "query": LIST }).to_string();
    counted.push(
        counts::count_requests(
            &mut engine_counter,
            ENGINE_LIST,
            &engine_url,
            &list,
            None,
            COUNTED_REQUESTS,
        )
        .await?,
    );
    drop(engine);

    let (naive_url, naive_server, mut naive_counter) =
        counts::baseline("fanout", dir.as_path()).await?;
    let naive_ws = format!("{}/ws", naive_url.replacen("http", "ws", 1));
    let mut sockets = counts::subscribers(
        &naive_ws,
        naive::UPDATED,
        &json!({}),
        "\"version\":",
        COUNTED_SUBSCRIBERS,
    )
    .await?;
    let http = reqwest::Client::new();
    let deliveries = COUNTED_SUBSCRIBERS as u64 * u64::from(COUNTED_CHANGES);
    counted.push(
        naive_counter
            .count(NAIVE_DELIVERY, deliveries, || {
                counts::fan_out(&mut sockets, "\"version\":", COUNTED_CHANGES, |_| {
                    let (http, url) = (&http, &naive_url);
                    async move {
                        call(http, url, None, naive::CHANGE, json!({})).await?;
                        Ok(())
                    }
                })
            })
            .await?,
    );
    drop(sockets);
    drop(naive_server);

    let rally_out = dir.as_path().join("rally.callgrind");
    // Embedded SQLite whatever the set-up: the database's work is then counted with the request's.
    let rally = Rally::launch(
        counts::Callgrind::command(&args.rally_bin, &rally_out),
        None,
        None,
        &[
            ("RALLY_ARGON2_MEMORY_KIB", "8"),
            ("RALLY_ARGON2_ITERATIONS", "1"),
            ("RALLY_WS_KEEPALIVE_SECONDS", "120"),
            ("RALLY_WS_SILENT_PERIODS", "0"),
        ],
        Duration::from_secs(300),
    )
    .await?;
    let mut counter = counts::Callgrind::follow(rally.pid()?, &rally_out);
    let url = rally.url();
    let seed = seed(&url, tag).await?;
    let read = json!({ "query": READ, "variables": { "id": seed.event } }).to_string();
    let cheers = json!({ "query": CHEERS, "variables": { "s": seed.session } }).to_string();
    let token = Some(seed.token.as_str());
    let mut profiled = Vec::new();
    for (name, body, token) in [
        ("`{ __typename }`", TRIVIAL, None),
        ("authenticated `event(id)` read", read.as_str(), token),
        (LIST_SCENARIO, list.as_str(), None),
        ("`recordCheers` mutation", cheers.as_str(), token),
    ] {
        let count =
            counts::count_requests(&mut counter, name, &url, body, token, COUNTED_REQUESTS).await?;
        profiled.push((name, counts::profile(&count.dump, 30).await));
        counted.push(count);
    }
    let mut sockets = counts::subscribers(
        &rally.ws_url(),
        EVENT_UPDATED,
        &json!({ "id": seed.event }),
        "\"version\":",
        COUNTED_SUBSCRIBERS,
    )
    .await?;
    let delivery = counter
        .count("`eventUpdated`: one fan-out delivery", deliveries, || {
            counts::fan_out(&mut sockets, "\"version\":", COUNTED_CHANGES, |k| {
                let (http, url, seed) = (&http, &url, &seed);
                retitle(http, url, seed, format!("Counted {k}"))
            })
        })
        .await?;
    profiled.push((
        "`eventUpdated`: one fan-out delivery",
        counts::profile(&delivery.dump, 30).await,
    ));
    counted.push(delivery);
    drop(sockets);
    rally.stop().await;

    let per_operation = |name: &str| {
        counted
            .iter()
            .find(|count| count.name == name)
            .map_or(1.0, |count| count.per_operation)
    };
    let engine = per_operation(ENGINE_TRIVIAL);
    let naive_delivery = per_operation(NAIVE_DELIVERY);
    let _ = writeln!(
        out,
        "## Instruction counts (valgrind callgrind; {COUNTED_REQUESTS} requests one after another on one connection after {} warm-up requests, or {COUNTED_CHANGES} changes each awaited by {COUNTED_SUBSCRIBERS} subscribers)\n\nInstructions the server executed (user space, all threads) per request or per delivery, in the steady state (every cache warm), with Rally on its embedded SQLite (the database's work counted too). An idle window as long as the work was counted after each scenario and subtracted (its share of the window is the background column). They do not move with the machine's load: compare them with the last committed run. The x columns are ratios of instructions (lower is cheaper), against the bare engine's `{{ __typename }}` and the naive server's delivery counted in the same run.\n\n| scenario | operations | instructions per operation | background | x engine | x naive delivery |\n|---|---|---|---|---|---|",
        counts::WARM_UP,
    );
    for count in &counted {
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.1}% | {:.2} | {} |",
            count.name,
            count.operations,
            count.per_operation,
            count.background * 100.0,
            count.per_operation / engine.max(1.0),
            if count.name.contains("delivery") {
                format!("{:.2}", count.per_operation / naive_delivery.max(1.0))
            } else {
                "-".to_owned()
            },
        );
    }
    out.push_str("\nWhere Rally's instructions go: the 30 functions with the most instructions of their own (callees not included) in each scenario's dump (`callgrind_annotate`; the dumps are kept under `callgrind/` beside the results, not committed):\n\n");
    for (name, profile) in profiled {
        let _ = writeln!(
            out,
            "<details><summary>{name}</summary>\n\n```\n{profile}\n```\n</details>\n"
        );
    }
    Ok(())
}

/// The scale-out tables: a cluster of two instances behind nginx (`scripts/cluster`: PostgreSQL,
/// Redis, S3), fan-out through it, and what the shared limiter and S3 cost against the embedded
/// defaults and against one PostgreSQL instance with local limits and a local folder.
async fn scale_out_part(args: &Args, tag: &str, out: &mut String) -> anyhow::Result<()> {
    let (Some(database_url), Some(redis_url)) = (&args.database_url, &args.redis_url) else {
        bail!("scale-out needs --database-url and --redis-url");
    };
    // Hashing at its cheapest and no caps: what is compared is the limiter and the store.
    let env = [
        ("RALLY_ARGON2_MEMORY_KIB", "8"),
        ("RALLY_ARGON2_ITERATIONS", "1"),
        ("RALLY_AUTH_ATTEMPTS_PER_LOGIN", "1000000"),
        ("RALLY_AUTH_ATTEMPTS_PER_ADDRESS", "1000000"),
        ("RALLY_UPLOADS_PER_MINUTE", "10000"),
        ("RALLY_WS_KEEPALIVE_SECONDS", "120"),
        ("RALLY_WS_SILENT_PERIODS", "0"),
    ];
    let cluster = Cluster::up(&args.rally_bin, database_url, redis_url, 2, &env).await?;
    let urls = (database_url.as_str(), redis_url.as_str());
    let result = scale_out_figures(args, tag, &cluster, urls, &env, out).await;
    cluster.down().await;
    result
}

async fn scale_out_figures(
    args: &Args,
    tag: &str,
    cluster: &Cluster,
    (database_url, redis_url): (&str, &str),
    env: &[(&str, &str)],
    out: &mut String,
) -> anyhow::Result<()> {
    let url = cluster.url();
    let seed = seed(&url, tag).await?;
    let http = reqwest::Client::new();
    let watched = Watched {
        name: "eventUpdated",
        query: EVENT_UPDATED,
        variables: json!({ "id": seed.event }),
        counter: "\"version\":",
    };
    let subscribers = args.subscribers.iter().copied().min().unwrap_or(1000);
    let change = |k: u32| {
        let (http, url, seed) = (&http, &url, &seed);
        retitle(http, url, seed, format!("Across {k}"))
    };
    let pids: Vec<u32> = cluster
        .instance_pids
        .iter()
        .chain(&cluster.nginx_pids)
        .copied()
        .collect();
    let figures = live::fanout(
        &cluster.ws_url(),
        &pids,
        &watched,
        subscribers,
        args.changes,
        Duration::from_millis(250),
        change,
    )
    .await?;
    let _ = writeln!(
        out,
        "## Scale-out (two instances behind nginx, sharing PostgreSQL, Redis and S3: {subscribers} `eventUpdated` subscribers and the writer all through nginx)\n\n| delivered | missed | p50 ms | p99 ms | max ms | CPU µs/delivery (instances + nginx) |\n|---|---|---|---|---|---|\n| {}/{} | {} | {} | {} | {} | {:.2} |\n",
        figures.received,
        figures.expected(),
        figures.expected().saturating_sub(figures.received),
        ms(figures.p50_us),
        ms(figures.p99_us),
        ms(figures.max_us),
        figures.cpu_us_per_delivery,
    );

    // One change at a time against one PostgreSQL instance: Redis (limits, and the broker), then
    // S3 (media); the embedded defaults and nginx over the cluster beside them.
    let s3 = [
        ("RALLY_MEDIA_URL", "s3://rally/bench-media"),
        ("AWS_ENDPOINT_URL", cluster.s3_endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "rally"),
        ("AWS_SECRET_ACCESS_KEY", "rally-secret"),
    ];
    let with_s3: Vec<(&str, &str)> = env.iter().chain(&s3).copied().collect();
    let bin = &args.rally_bin;
    let embedded = Rally::start(bin, None, None, env).await?;
    let postgres = Rally::start(bin, Some(database_url), None, env).await?;
    let shared_limits = Rally::start(bin, Some(database_url), Some(redis_url), env).await?;
    let on_s3 = Rally::start(bin, Some(database_url), None, &with_s3).await?;
    let targets = [
        (
            "embedded: SQLite, limits in memory, media in a folder",
            embedded.url(),
        ),
        (
            "one instance: PostgreSQL, limits in memory, media in a folder",
            postgres.url(),
        ),
        (
            "the same with limits in Redis (`RALLY_REDIS_URL`)",
            shared_limits.url(),
        ),
        ("the same with media on S3 (`RALLY_MEDIA_URL`)", on_s3.url()),
        (
            "through nginx: two cluster instances (Redis and S3)",
            url.clone(),
        ),
    ];
    let password = PASSWORD;
    let photo = media::photo()?;
    let (mut users, mut uploaders_of) = (Vec::new(), Vec::new());
    for (n, (_, target)) in targets.iter().enumerate() {
        let target_tag = format!("{tag}{n}");
        users.push(auth::sign_up(target, &target_tag, args.logins, password).await?);
        uploaders_of.push(uploaders(target, &target_tag, UPLOADERS).await?);
    }
    let duration = Duration::from_secs(args.duration);
    let mut logins: Vec<Rounds> = vec![Vec::new(); targets.len()];
    let mut uploads: Vec<Rounds> = vec![Vec::new(); targets.len()];
    let rounds = args.rounds.max(1);
    for _ in 0..rounds {
        for (n, (_, target)) in targets.iter().enumerate() {
            logins[n].push(auth::logins_per_second(target, &users[n], password, duration).await?);
        }
        for (n, (_, target)) in targets.iter().enumerate() {
            uploads[n]
                .push(media::uploads_per_second(target, &uploaders_of[n], &photo, duration).await?);
        }
    }
    for rally in [embedded, postgres, shared_limits, on_s3] {
        rally.stop().await;
    }
    let names: Vec<&str> = targets.iter().map(|(name, _)| *name).collect();
    rates_table(
        out,
        &names,
        &format!(
            "### Logins per second ({} users in a loop each; argon2id at its cheapest, so the limiter's share is not hidden under hashing; {rounds} interleaved rounds of {} s)",
            args.logins, args.duration
        ),
        "logins/s",
        &logins,
    );
    rates_table(
        out,
        &names,
        &format!(
            "### Avatar uploads per second ({UPLOADERS} users uploading a 1024x768 JPEG in a loop each: checked, decoded, re-encoded to 512 px and stored; {rounds} interleaved rounds of {} s)",
            args.duration
        ),
        "uploads/s",
        &uploads,
    );
    Ok(())
}

/// One set-up's (rate, failures) per round.
type Rounds = Vec<(f64, u64)>;

/// A table of rates per set-up, each the median of its rounds, with ratios to the first two.
fn rates_table(out: &mut String, names: &[&str], title: &str, unit: &str, figures: &[Rounds]) {
    let rounds = figures.first().map_or(0, Vec::len);
    let medians: Vec<(f64, f64, u64)> = figures
        .iter()
        .map(|rounds| median_with_spread(rounds))
        .collect();
    let _ = writeln!(
        out,
        "{title}\n\n| set-up | {unit} (median of {rounds}) | spread | failures | vs embedded | vs one PostgreSQL instance |\n|---|---|---|---|---|---|"
    );
    for (name, (median, spread, failures)) in names.iter().zip(&medians) {
        let _ = writeln!(
            out,
            "| {name} | {median:.1} | {:.0}%{} | {failures} | {:.2}x | {:.2}x |",
            spread * 100.0,
            if *spread > 0.10 { " (wide)" } else { "" },
            median / medians[0].0.max(f64::MIN_POSITIVE),
            median / medians[1].0.max(f64::MIN_POSITIVE),
        );
    }
    out.push('\n');
}

/// The password of every user the scale-out part makes.
const PASSWORD: &str = "benchmark-password";

/// Users uploading at once in the scale-out part.
const UPLOADERS: usize = 4;

/// `users` fresh users on `url`, as access tokens.
async fn uploaders(url: &str, tag: &str, users: usize) -> anyhow::Result<Vec<String>> {
    let http = reqwest::Client::new();
    let mut tokens = Vec::with_capacity(users);
    for n in 0..users {
        tokens.push(rally::signup(&http, url, &format!("upload_{tag}_{n}"), PASSWORD).await?);
    }
    Ok(tokens)
}

/// The median of per-round rates, their spread ((max - min) / median) and the failures in all.
fn median_with_spread(rounds: &[(f64, u64)]) -> (f64, f64, u64) {
    let (median, spread) = median_and_spread(rounds.iter().map(|(rate, _)| *rate).collect());
    (
        median,
        spread,
        rounds.iter().map(|(_, failures)| failures).sum(),
    )
}

/// A table cell from an error (one line, no column breaks).
fn cell(err: &anyhow::Error) -> String {
    let text: String = format!("{err:#}").chars().take(200).collect();
    text.replace('|', "/").replace('\n', " ")
}

/// The meetings table: bookings and the race on one fresh instance, the search on another.
async fn meetings_part(args: &Args, tag: &str, out: &mut String) -> anyhow::Result<()> {
    // Only the set-up's sign-ups hash passwords, and no figure below includes them. The bookers
    // share 1,000 slots unevenly (a fast one takes more than its 16): the cap on one person's
    // bookings is lifted, though still counted on every booking.
    let cheap = [
        ("RALLY_ARGON2_MEMORY_KIB", "256"),
        ("RALLY_ARGON2_ITERATIONS", "1"),
        ("RALLY_MAX_UPCOMING_BOOKINGS", "1000"),
    ];
    let duration = Duration::from_secs(args.duration);
    let _ = writeln!(
        out,
        "## Meetings\n\nBookings: one owner's 1,000 slots, {} bookers on keep-alive connections taking the next slot from a shared index (latency of the successful `bookAvailability` calls). Race: {} connected bookers released together by a barrier onto one fresh slot, {} rounds; the time runs from the release to the last answer. Search: {} owners × 366 daily slots seeded {} at a time, then `availabilities(from, to, first: 20)` over one-day windows on random days of the seeded year at {} concurrent requests for {}s, with `{{ __typename }}` on the same instance right after as the baseline.\n\n| scenario | rate | p50 µs | p99 µs | outcome | x `{{ __typename }}` | target | result |\n|---|---|---|---|---|---|---|---|",
        meetings::BOOKERS,
        meetings::RACERS,
        meetings::ROUNDS,
        meetings::SEARCH_OWNERS,
        meetings::SEED_IN_FLIGHT,
        args.concurrency,
        args.duration,
    );

    let rally = args.rally(&cheap).await?;
    let url = rally.url();
    let name = format!("`bookAvailability`, {} bookers", meetings::BOOKERS);
    match meetings::booking_throughput(&url, tag).await {
        Ok(t) => {
            let pass = t.tally.booked == 1000 && t.slots == 1000 && t.tally.conflicts == 0;
            let _ = writeln!(
                out,
                "| {name} | {:.0} bookings/s ({:.2} s) | {} | {} | {} of {} slots booked, {} CONFLICT, {} errors | - | 1000 booked, 0 CONFLICT | {} |",
                t.per_second,
                t.seconds,
                t.p50_us,
                t.p99_us,
                t.tally.booked,
                t.slots,
                t.tally.conflicts,
                t.tally.errors,
                verdict(pass),
            );
        }
        Err(err) => {
            let _ = writeln!(out, "| {name} | not run: {} | | | | | | FAIL |", cell(&err));
        }
    }
    let name = format!(
        "{}-way race on one slot, {} rounds",
        meetings::RACERS,
        meetings::ROUNDS
    );
    match meetings::race(&url, tag).await {
        Ok(rounds) => {
            let mut times: Vec<u64> = rounds.iter().map(|r| r.last_answer_us).collect();
            let each = times.iter().map(|&t| ms(t)).collect::<Vec<_>>().join(", ");
            times.sort_unstable();
            let median = times.get(times.len() / 2).copied().unwrap_or(0);
            let winners = rounds
                .iter()
                .map(|r| r.tally.booked.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            let conflicts = rounds
                .iter()
                .map(|r| r.tally.conflicts.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            let errors: u64 = rounds.iter().map(|r| r.tally.errors).sum();
            let passed = rounds.iter().filter(|r| r.passed(meetings::RACERS)).count();
            let _ = writeln!(
                out,
                "| {name} | median {} ms to the last answer (rounds: {each} ms) | | | winners {winners}; CONFLICT {conflicts}; {errors} errors | - | 1 winner, {} CONFLICT, every round | {} ({passed}/{} rounds) |",
                ms(median),
                meetings::RACERS - 1,
                verdict(!rounds.is_empty() && passed == rounds.len()),
                rounds.len(),
            );
        }
        Err(err) => {
            let _ = writeln!(out, "| {name} | not run: {} | | | | | | FAIL |", cell(&err));
        }
    }
    rally.stop().await;

    let rally = args.rally(&cheap).await?;
    match meetings::search(&rally.url(), tag, args.concurrency, duration).await {
        Ok(s) => {
            let _ = writeln!(
                out,
                "| seeding: {} owners × `setWeeklyAvailability` (366 days), {} at a time | {} slots in {:.1} s ({:.0} slots/s) | | | {} owners failed | - | report | - |",
                s.owners,
                meetings::SEED_IN_FLIGHT,
                s.slots,
                s.seed_seconds,
                s.slots as f64 / s.seed_seconds.max(f64::EPSILON),
                s.seed_errors,
            );
            let sample_ok = s.sample_edges == 20 && s.sample_more;
            let _ = writeln!(
                out,
                "| `availabilities(from, to, first: 20)`, random one-day windows over {} slots | {:.0} req/s | {} | {} | {} errors; a sample window: {} edges, hasNextPage {} | {:.2} | report (sample page full: {}) | - |",
                s.slots,
                s.search.per_second,
                s.search.p50_us,
                s.search.p99_us,
                s.search.errors,
                s.sample_edges,
                s.sample_more,
                s.search.per_second / s.trivial.per_second.max(f64::EPSILON),
                verdict(sample_ok),
            );
            let _ = writeln!(
                out,
                "| baseline: `{{ __typename }}`, same instance | {:.0} req/s | {} | {} | {} errors | 1.00 | report | - |",
                s.trivial.per_second, s.trivial.p50_us, s.trivial.p99_us, s.trivial.errors,
            );
            if s.search.requests == 0 {
                eprintln!("warning: the availabilities search completed no request");
            }
        }
        Err(err) => {
            let _ = writeln!(
                out,
                "| `availabilities` search | not run: {} | | | | | | FAIL |",
                cell(&err)
            );
        }
    }
    rally.stop().await;
    out.push('\n');
    Ok(())
}

/// One proximity row.
fn proximity_row(
    out: &mut String,
    name: &str,
    figures: anyhow::Result<proximity::ProximityFigures>,
) {
    let f = match figures {
        Ok(f) => f,
        Err(err) => {
            let _ = writeln!(
                out,
                "| {name} | not run: {} | | | | | | | | | | | FAIL |",
                cell(&err)
            );
            return;
        }
    };
    if let Some(error) = &f.first_error {
        let short: String = error.chars().take(300).collect();
        eprintln!(
            "warning: {name}: {} updates failed, the first: {short}",
            f.errors
        );
    }
    let screen_pass =
        f.p99_us.max(f.scheduled_p99_us) <= 100_000 && f.missed == 0 && f.accepted > 0;
    let alerts_pass =
        f.alerts_expected > 0 && f.alerts_received == f.alerts_expected && f.alerts_extra == 0;
    let _ = writeln!(
        out,
        "| {name} | {} × {} phones, {} s (set-up {:.0} s) | {:.0} | {:.0} | {} / {} | {} | {} | {} / {} / {} ({} from schedule) | {}/{} (+{} extra) | {} / {} | {:.1} | p99 <= 100 ms, 0 missed: {}; every alert once: {} |",
        f.activities,
        f.phones,
        f.seconds,
        f.setup_seconds,
        f.offered_per_second,
        f.accepted_per_second,
        f.rate_limited,
        f.errors,
        f.frames,
        f.missed,
        ms(f.p50_us),
        ms(f.p99_us),
        ms(f.max_us),
        ms(f.scheduled_p99_us),
        f.alerts_received,
        f.alerts_expected,
        f.alerts_extra,
        ms(f.alert_p50_us),
        ms(f.alert_p99_us),
        f.cpu_us_per_update,
        verdict(screen_pass),
        verdict(alerts_pass),
    );
}

/// The proximity table: one instance, then (with PostgreSQL and Redis) phones and screens on two.
async fn proximity_part(args: &Args, tag: &str, out: &mut String) -> anyhow::Result<()> {
    // Sign-ups are set-up, not measured: argon2 at its cheapest. Phones send once a second; the
    // server's limit is set to half that so a request delayed by the load generator is not refused.
    // One secret for every instance, so a token signed by one is accepted by the others.
    let settings = [
        ("RALLY_ARGON2_MEMORY_KIB", "256"),
        ("RALLY_ARGON2_ITERATIONS", "1"),
        ("RALLY_LOCATION_MIN_INTERVAL_MS", "500"),
        ("RALLY_WS_KEEPALIVE_SECONDS", "120"),
        ("RALLY_WS_SILENT_PERIODS", "0"),
        (
            "RALLY_JWT_SECRET",
            "bench-only-secret-shared-by-every-instance",
        ),
    ];
    let (activities, seconds) = (args.proximity_activities, args.proximity_seconds);
    let _ = writeln!(
        out,
        "## Proximity\n\n{activities} activities each watch {} phones; every phone sends one `updateLocation` a second for {seconds} s ({} updates/s offered when the server keeps up) through {} keep-alive connections, and each owner's screen follows `activityUpdated` and `proximityAlerts` on one websocket. Every update of an activity moves one of its phones 0.1 m nearer than the last, so a frame's nearest distance names the newest update it reflects; latency runs from the update's request to the first frame at the owner that reflects it or a newer one. Each phone crosses the {} m radius once (from the 16th second): one alert each. The server's rate limit is 500 ms for this run (phones send every 1,000 ms). CPU is the servers' user + system time per accepted update.\n\n| set-up | load | offered/s | accepted/s | RATE_LIMITED / errors | frames | missed | p50 / p99 / max ms to the screen | alerts | alert p50 / p99 ms | CPU µs/update | targets |\n|---|---|---|---|---|---|---|---|---|---|---|---|",
        proximity::PHONES_PER_ACTIVITY,
        activities * proximity::PHONES_PER_ACTIVITY,
        proximity::CONNECTIONS,
        proximity::RADIUS,
    );
    // At the full load first (the server's ceiling on this machine), then paced at 70% of the rate
    // it sustained, where latency is the system's and not a queue's.
    let mut sustained = 0.0;
    let mut scales = vec![(activities, "saturation".to_owned())];
    let mut done = 0;
    while done < scales.len() {
        let (count, name) = scales[done].clone();
        let rally = args.rally(&settings).await?;
        let figures = proximity::run(
            &rally.url(),
            &rally.ws_url(),
            &rally.url(),
            &[rally.pid()?],
            &format!("{tag}{done}a"),
            count,
            seconds,
        )
        .await;
        rally.stop().await;
        if done == 0
            && let Ok(f) = &figures
        {
            sustained = f.accepted_per_second;
            let paced =
                ((sustained * 0.7) / proximity::PHONES_PER_ACTIVITY as f64).floor() as usize;
            if paced > 0 && paced < count {
                scales.push((paced, format!("paced at 70% of {sustained:.0}/s")));
            }
        }
        proximity_row(out, &format!("one instance, {name}"), figures);
        done += 1;
    }
    if args.database_url.is_some() && args.redis_url.is_some() {
        let paced = ((sustained * 0.7) / proximity::PHONES_PER_ACTIVITY as f64).floor() as usize;
        for (count, name) in [
            (activities, "saturation".to_owned()),
            (paced.max(1).min(activities), "paced as above".to_owned()),
        ] {
            let screens = args.rally(&settings).await?;
            let phones = args.rally(&settings).await?;
            let figures = proximity::run(
                &screens.url(),
                &screens.ws_url(),
                &phones.url(),
                &[screens.pid()?, phones.pid()?],
                &format!("{tag}{count}b"),
                count,
                seconds,
            )
            .await;
            screens.stop().await;
            phones.stop().await;
            proximity_row(
                out,
                &format!("two instances (phones on one, screens on the other), {name}"),
                figures,
            );
        }
    }
    out.push('\n');
    Ok(())
}

/// The runs table, on a fresh instance.
async fn runs_part(args: &Args, tag: &str, out: &mut String) -> anyhow::Result<()> {
    let settings = [
        ("RALLY_ARGON2_MEMORY_KIB", "256"),
        ("RALLY_ARGON2_ITERATIONS", "1"),
        ("RALLY_RUN_MAX_SPEED_KMH", "1000"),
    ];
    let _ = writeln!(
        out,
        "## Runs\n\nA run's points must lie between its start and its save (a minute of skew allowed), and a client cannot set a start back, so each track spans the 110 s around `startRun`; for {} points to cover what a 2.8-hour run covers (29.7 km), this instance runs with `RALLY_RUN_MAX_SPEED_KMH=1000`. Every point is still judged, measured and turned into cells (H3 resolution 10). Rows are 222 m apart, so each save captures new cells. GPX files carry elevation, heart rate and cadence per point, as watch exports do. Territory: rows are saved until the event holds at least {} cells, then `territories(eventId)` runs at {} concurrent requests for {} s, with and without `boundary`, beside `{{ __typename }}` on the same instance.\n\n| scenario | rate | p50 | p99 / max | outcome | target | result |\n|---|---|---|---|---|---|---|",
        runs::TRACK_POINTS,
        runs::TERRITORY_CELLS,
        runs::LISTERS,
        args.duration,
    );
    let rally = args.rally(&settings).await?;
    let figures = runs::run(
        &rally.url(),
        rally.pid()?,
        tag,
        Duration::from_secs(args.duration),
    )
    .await;
    rally.stop().await;
    match figures {
        Ok(f) => {
            let _ = writeln!(
                out,
                "| GPX import, {:.1} MB file ({} points), one after another | {:.2} tracks/s | {} ms | max RSS {:.0} MiB (from {:.0} MiB before) | {} imports saved | report | - |",
                f.gpx_bytes as f64 / (1024.0 * 1024.0),
                runs::TRACK_POINTS,
                f.imports_per_second,
                ms(f.import_p50_us),
                f.peak_rss_bytes as f64 / (1024.0 * 1024.0),
                f.rss_before_bytes as f64 / (1024.0 * 1024.0),
                f.imports,
            );
            let _ = writeln!(
                out,
                "| `saveRun`, {}-point track | {:.0} cells/s ({:.0} cells a save) | {} ms | max {} ms | {} saves | report | - |",
                runs::TRACK_POINTS,
                f.cells_per_second,
                f.cells_per_save,
                ms(f.save_p50_us),
                ms(f.save_max_us),
                f.saves,
            );
            let bare = f.trivial.per_second.max(f64::EPSILON);
            let _ = writeln!(
                out,
                "| `territories` with `boundary`, {} cells ({:.1} MB a response; seeded in {:.0} s) | {:.2} req/s ({:.4}x `{{ __typename }}`) | {} ms | {} ms | {} errors | report | - |",
                f.territory_cells,
                f.list_bytes as f64 / (1024.0 * 1024.0),
                f.seed_seconds,
                f.listed.per_second,
                f.listed.per_second / bare,
                ms(f.listed.p50_us),
                ms(f.listed.p99_us),
                f.listed.errors,
            );
            let _ = writeln!(
                out,
                "| `territories` without `boundary` | {:.2} req/s ({:.4}x) | {} ms | {} ms | {} errors | report | - |",
                f.listed_no_boundary.per_second,
                f.listed_no_boundary.per_second / bare,
                ms(f.listed_no_boundary.p50_us),
                ms(f.listed_no_boundary.p99_us),
                f.listed_no_boundary.errors,
            );
            let _ = writeln!(
                out,
                "| baseline: `{{ __typename }}`, same instance | {:.0} req/s | {} µs | {} µs | {} errors | report | - |",
                f.trivial.per_second, f.trivial.p50_us, f.trivial.p99_us, f.trivial.errors,
            );
        }
        Err(err) => {
            let _ = writeln!(out, "| runs | not run: {} | | | | | FAIL |", cell(&err));
        }
    }
    out.push('\n');
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.serve_baseline.as_deref() {
        Some("axum") => return http::bare_axum(args.port).await,
        Some("engine") => return http::bare_engine(args.port).await,
        Some("fanout") => return naive::serve(args.port).await,
        Some(other) => bail!("unknown baseline {other}"),
        None => {}
    }
    let setup = match (&args.database_url, &args.redis_url) {
        (None, None) => "sqlite",
        (Some(_), None) => "postgres",
        (None, Some(_)) => "sqlite-redis",
        (Some(_), Some(_)) => "postgres-redis",
    };
    // Handles stay unique when runs share a PostgreSQL database.
    let tag = format!("{:x}", chrono::Utc::now().timestamp_millis());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Rally bench, {} ({setup})\n\nCommand: `cargo build --release && cargo run -p bench --release --{}{}{} --rounds {} --duration {}`  \nMachine: {} cores, loopback; the load generator, each baseline and every Rally instance run as separate processes on the same machine.\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        if args.only.is_empty() {
            String::new()
        } else {
            format!(" --only {}", args.only.join(","))
        },
        args.database_url
            .as_ref()
            .map(|_| " --database-url …")
            .unwrap_or(""),
        args.redis_url
            .as_ref()
            .map(|_| " --redis-url …")
            .unwrap_or(""),
        args.rounds,
        args.duration,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
    );
    if args.runs("http") {
        eprintln!("http…");
        http_part(&args, &format!("{tag}h"), &mut out).await?;
    }
    if args.runs("counts") {
        if counts::valgrind_installed().await {
            eprintln!("instruction counts (valgrind)…");
            counts_part(&args, &format!("{tag}c"), &mut out).await?;
        } else {
            out.push_str("## Instruction counts\n\nNot run: valgrind is not installed (`apt-get install valgrind`).\n\n");
        }
    }
    if args.runs("live") {
        eprintln!("websockets…");
        live_part(&args, &format!("{tag}l"), &mut out).await?;
    }
    if args.runs("auth") {
        eprintln!("auth…");
        auth_part(&args, &format!("{tag}a"), &mut out).await?;
    }
    if args.runs("scale-out") {
        if args.database_url.is_some() && args.redis_url.is_some() {
            eprintln!("scale-out…");
            scale_out_part(&args, &format!("{tag}s"), &mut out).await?;
        } else {
            out.push_str("## Scale-out\n\nNot run: it needs `--database-url` and `--redis-url`.\n");
        }
    }
    if args.runs("meetings") {
        eprintln!("meetings…");
        meetings_part(&args, &format!("{tag}m"), &mut out).await?;
    }
    if args.runs("proximity") {
        eprintln!("proximity…");
        proximity_part(&args, &format!("{tag}x"), &mut out).await?;
    }
    if args.runs("runs") {
        eprintln!("runs…");
        runs_part(&args, &format!("{tag}r"), &mut out).await?;
    }
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
