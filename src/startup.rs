//! Start-up: [`App::build`] wires configuration, storage, keys and the router and binds the port;
//! [`App::run_until_stopped`] serves until the shutdown future resolves, then drains.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::serve::ListenerExt as _;
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::task::TaskTracker;

use crate::auth::{AuthLimits, LimitStore, Passwords, PerUserLimit, TokenKeys};
use crate::config::Config;
use crate::cups::Leaderboards;
use crate::games::service::BlurRenditions;
use crate::graphql::execution::Executor;
use crate::graphql::fanout::Fanout;
use crate::graphql::limits::QueryLimits;
use crate::graphql::schema;
use crate::graphql::ws::{SocketSettings, Sockets};
use crate::live::Live;
use crate::media::{self, MediaStore};
use crate::state::{AppState, Inner};
use crate::{accounts, db, http, jobs, meetings};

/// A built, bound, not yet serving Rally.
pub struct App {
    listener: TcpListener,
    address: SocketAddr,
    state: AppState,
    leaderboards: Leaderboards,
    router: Router,
    metrics_listener: Option<TcpListener>,
    sockets: Sockets,
    /// Runs the operations; shutdown waits for the mutations it runs to their end.
    executor: Executor,
    stopping: tokio::sync::watch::Sender<bool>,
}

impl App {
    /// Checks the configuration, connects and migrates the database, prepares media and keys, and
    /// binds the listener (port 0 picks a free port; see [`App::address`]).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        config.check()?;
        config.prepare_data_dir()?;
        let db = db::connect(&config).await?;
        db::migrate_up(&db).await?;
        accounts::service::apply_admins(&db, &config.admins)
            .await
            .map_err(|err| err.for_operator().context("cannot apply RALLY_ADMINS"))?;
        let media = MediaStore::open(&config.media_url()?, config.public_url.as_deref())
            .context("cannot open the media store")?;
        let tokens = TokenKeys::new(&config.load_jwt_secret()?, config.access_token_ttl());
        let (live, limit_store) = match &config.redis_url {
            Some(url) => (
                Live::redis(url, &config.redis_prefix)?,
                LimitStore::redis(url, &config.redis_prefix, tokens.clone())?,
            ),
            None => (Live::in_process(), LimitStore::local()),
        };
        let passwords = Passwords::new(
            config.argon2_memory_kib,
            config.argon2_iterations,
            config.argon2_concurrency,
        )?;
        let auth_limits = AuthLimits::new(
            config.auth_attempts_per_login,
            config.auth_attempts_per_address,
            Duration::from_secs(config.auth_window_seconds),
            &limit_store,
        );
        let writes = db::Writes::for_backend(&db);
        let uploads = PerUserLimit::per_minute(
            "uploads",
            config.uploads_per_minute,
            "too many uploads",
            &limit_store,
        );
        let refreshes = PerUserLimit::per_minute(
            "refreshes",
            config.refreshes_per_minute,
            "too many session refreshes",
            &limit_store,
        );
        let cup_code_attempts = PerUserLimit::per_minute(
            "cup-codes",
            config.cup_code_attempts_per_minute,
            "too many cup-code attempts",
            &limit_store,
        );
        let listener =
            listen(config.bind).with_context(|| format!("cannot listen on {}", config.bind))?;
        let metrics_listener = match config.metrics_bind {
            Some(address) => Some(
                listen(address)
                    .with_context(|| format!("cannot listen on {address} (RALLY_METRICS_BIND)"))?,
            ),
            None => None,
        };
        let address = listener.local_addr()?;
        let limits = QueryLimits::from_config(&config);
        let state = AppState::new(Inner {
            config,
            db,
            media,
            live,
            tokens,
            passwords,
            auth_limits,
            writes,
            uploads,
            refreshes,
            cup_code_attempts,
            to_end: TaskTracker::new(),
        });
        let leaderboards =
            Leaderboards::new(Duration::from_millis(state.config.leaderboard_window_ms));
        let schemas = schema::build(limits, &state, leaderboards.clone());
        http::prometheus();
        let (stopping, stopping_rx) = tokio::sync::watch::channel(false);
        let settings = SocketSettings {
            init_timeout: Duration::from_secs(state.config.ws_init_timeout_seconds),
            keepalive: Duration::from_secs(state.config.ws_keepalive_seconds.max(1)),
            silent_periods: state.config.ws_silent_periods,
            max_subscriptions: state.config.ws_max_subscriptions,
        };
        let executor = Executor::new(schemas, limits, state.to_end.clone());
        let fanout = Fanout::new(executor.clone());
        let sockets = Sockets::new(fanout, state.clone(), settings, stopping_rx);
        let domains = media::routes(state.media.clone(), Arc::new(BlurRenditions(state.clone())))
            .merge(meetings::calendar::routes(state.clone()));
        let router = http::router(state.clone(), executor.clone(), sockets.clone(), domains);
        Ok(Self {
            listener,
            address,
            state,
            leaderboards,
            router,
            metrics_listener,
            sockets,
            executor,
            stopping,
        })
    }

    /// The bound address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// The shared subscription executions (tests count them).
    pub fn fanout(&self) -> Fanout {
        self.sockets.fanout()
    }

    /// This instance's live leaderboard feeds (tests count their computations).
    pub fn leaderboards(&self) -> Leaderboards {
        self.leaderboards.clone()
    }

    /// The shared state (tests use it to reach the database directly).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then lets requests in flight finish for up to the configured
    /// grace period.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            listener,
            address,
            state,
            leaderboards: _,
            router,
            metrics_listener,
            sockets,
            executor,
            stopping,
        } = self;
        let metrics = metrics_listener.map(|listener| {
            tokio::spawn(async move {
                if let Err(err) = axum::serve(listener, http::metrics_router()).await {
                    tracing::error!(error = %err, "the metrics listener failed");
                }
            })
        });
        let grace = Duration::from_secs(state.config.shutdown_grace_seconds);
        let housekeeping = tokio::spawn(housekeeping(state.clone()));
        let holder = jobs::service::holder_name();
        let jobs = tokio::spawn(jobs::service::run_forever(state.clone(), holder.clone()));
        let ended_sessions = accounts::service::follow_ended_sessions(state.clone()).await;
        tracing::info!(%address, "rally is listening");
        let stopping_rx = stopping.subscribe();
        let signal = async move {
            shutdown.await;
            tracing::info!("shutting down: closing websockets, draining requests");
            // Websockets get a close frame with a reconnect hint (they are not tracked by the
            // HTTP server's graceful shutdown).
            let _ = stopping.send(true);
        };
        // Small frames (a websocket ack after the upgrade, a `next`) go out at once instead of
        // waiting behind Nagle's algorithm for the peer's delayed ACK.
        let listener = listener.tap_io(|tcp| {
            if let Err(err) = tcp.set_nodelay(true) {
                tracing::debug!(error = %err, "cannot set TCP_NODELAY");
            }
        });
        let serve = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(signal);
        let deadline = async move {
            let mut stopping = stopping_rx;
            let _ = stopping.wait_for(|stopping| *stopping).await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            result = serve => result.context("server failed")?,
            () = deadline => tracing::warn!("grace period over; closing remaining connections"),
        }
        let drained = tokio::time::timeout(Duration::from_secs(2), async {
            while sockets.open() > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        if drained.await.is_err() {
            tracing::warn!(open = sockets.open(), "websockets still open at exit");
        }
        // Mutations whose clients left (or timed out), and queries' writes, still finish before
        // the database closes.
        if !executor.finish_running(grace).await {
            tracing::warn!("work still running to its end at exit");
        }
        housekeeping.abort();
        jobs.abort();
        let _ = jobs.await;
        if let Err(err) = jobs::service::release_leases(&state, &holder).await {
            err.report();
        }
        ended_sessions.abort();
        if let Some(metrics) = metrics {
            metrics.abort();
        }
        state.db.clone().close().await.ok();
        tracing::info!("rally stopped");
        Ok(())
    }
}

/// Periodic upkeep: bounded rate-limit memory, histogram upkeep.
async fn housekeeping(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        state.auth_limits.shrink();
        state.uploads.shrink();
        state.cup_code_attempts.shrink();
        state.live.sweep();
        http::prometheus().run_upkeep();
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}

/// Connections the kernel may hold completed but not yet accepted. Tokio's default (1,024) overflows
/// when thousands of phones reconnect at once (after a deploy, say); the kernel caps it at
/// `net.core.somaxconn`.
const ACCEPT_BACKLOG: u32 = 8192;

/// Binds `address` (with `SO_REUSEADDR`, as `TcpListener::bind` does) with a deep accept queue.
fn listen(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(ACCEPT_BACKLOG)
}
