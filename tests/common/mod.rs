//! The test app: a real Rally on port 0 with its own database (a SQLite file in a temp dir, or a
//! fresh PostgreSQL database dropped afterwards), and typed helpers to talk to it over HTTP.

pub mod fixtures;
pub mod gql;
pub mod ws;

use std::sync::Once;

use rally::{App, Config};
use sea_orm::{ConnectionTrait, Database};
use tokio::sync::oneshot;

pub use gql::{Gql, Session};
pub use ws::{LEGACY_WS, TRANSPORT_WS, WsClient};

/// The HS256 secret every test server signs with, so tests can forge tokens.
pub const TEST_SECRET: &str = "test-secret-test-secret-test-secret-0123456789";

/// Which database a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in the test's temp dir (always).
    Sqlite,
    /// A fresh database on `RALLY_TEST_DATABASE_URL`.
    Postgres,
}

impl Backend {
    /// PostgreSQL when configured; otherwise a printed skip, or a failure under
    /// `RALLY_REQUIRE_SERVICES`.
    pub fn postgres_or_skip(test: &str) -> Option<Self> {
        if std::env::var_os("RALLY_TEST_DATABASE_URL").is_some() {
            return Some(Self::Postgres);
        }
        if std::env::var_os("RALLY_REQUIRE_SERVICES").is_some() {
            panic!("{test}: RALLY_REQUIRE_SERVICES is set but RALLY_TEST_DATABASE_URL is not");
        }
        eprintln!("skipping {test} on PostgreSQL: RALLY_TEST_DATABASE_URL is not set");
        None
    }
}

/// `RALLY_TEST_REDIS_URL`, or a printed skip (a failure under `RALLY_REQUIRE_SERVICES`).
pub fn redis_url_or_skip(test: &str) -> Option<String> {
    if let Ok(url) = std::env::var("RALLY_TEST_REDIS_URL") {
        return Some(url);
    }
    if std::env::var_os("RALLY_REQUIRE_SERVICES").is_some() {
        panic!("{test}: RALLY_REQUIRE_SERVICES is set but RALLY_TEST_REDIS_URL is not");
    }
    eprintln!("skipping {test}: RALLY_TEST_REDIS_URL is not set");
    None
}

/// A running Rally and what it needs to be torn down.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    /// Shares cookies with nobody; one per app.
    pub http: reqwest::Client,
    /// The server's state (for tests that must look behind the API, e.g. at stored hashes).
    pub state: rally::state::AppState,
    /// The server's live leaderboard feeds (to count computations).
    pub leaderboards: rally::cups::Leaderboards,
    /// The server's shared subscription executions.
    pub fanout: rally::graphql::fanout::Fanout,
    config: Config,
    _dir: tempfile::TempDir,
    postgres: Option<PostgresDb>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

fn init_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let filter = std::env::var("RALLY_TEST_LOG").unwrap_or_else(|_| "off".into());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    });
}

impl TestApp {
    /// A server with test defaults on `backend`.
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, |_| {}).await
    }

    /// A server with test defaults changed by `tweak`.
    pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Self {
        init_logs();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::with_data_dir(dir.path());
        config.bind = "127.0.0.1:0".parse().expect("address");
        config.jwt_secret = Some(TEST_SECRET.into());
        // Cheap hashing keeps the suite fast; the production cost is the configured default.
        config.argon2_memory_kib = 256;
        config.argon2_iterations = 1;
        config.database_max_connections = 5;
        config.admins = vec!["root_admin".into()];
        // The nightly finisher stays half a day away from any test that does not set its own time.
        config.event_finish_time = (chrono::Utc::now() + chrono::Duration::hours(12)).time();
        let postgres = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                let db = PostgresDb::create().await;
                config.database_url = Some(db.url.clone());
                Some(db)
            }
        };
        tweak(&mut config);
        if config.redis_url.is_some() {
            // Channels and limits of this app alone, though every test shares one Redis.
            config.redis_prefix = format!("t{}", uuid::Uuid::new_v4().simple());
        }
        Self::start(config, dir, postgres).await
    }

    async fn start(config: Config, dir: tempfile::TempDir, postgres: Option<PostgresDb>) -> Self {
        let app = App::build(config.clone()).await.expect("app builds");
        let address = format!("http://{}", app.address());
        let state = app.state().clone();
        let leaderboards = app.leaderboards();
        let fanout = app.fanout();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        Self {
            address,
            http: reqwest::Client::new(),
            state,
            leaderboards,
            fanout,
            config,
            _dir: dir,
            postgres,
            stop: Some(stop),
            server: Some(server),
        }
    }

    /// Stops this server and starts a new one (on a new port) on the same database and data dir:
    /// what an instance restarted by a deploy sees.
    pub async fn restart(self) -> Self {
        self.restart_with(|_| {}).await
    }

    /// [`TestApp::restart`] with settings changed by `tweak` (a deploy with a new configuration).
    pub async fn restart_with(mut self, tweak: impl FnOnce(&mut Config)) -> Self {
        let mut config = self.config.clone();
        tweak(&mut config);
        let postgres = self.postgres.take();
        self.halt().await;
        let dir = std::mem::replace(&mut self._dir, tempfile::tempdir().expect("temp dir"));
        drop(self);
        Self::start(config, dir, postgres).await
    }

    /// `address` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// A websocket client on `/graphql/ws` speaking `protocol`.
    pub async fn ws(&self, protocol: &'static str) -> WsClient {
        WsClient::connect(
            &format!("{}/graphql/ws", self.address.replace("http://", "ws://")),
            protocol,
        )
        .await
    }

    /// Waits until `count` subscribers on this server listen to `topic` (its wire name, e.g.
    /// `events:status`): the server's own signal that a subscription is registered, for event
    /// streams that send nothing until a change.
    pub async fn listening(&self, topic: &str, count: usize) {
        for _ in 0..500 {
            if self.state.live.subscribers(topic) >= count {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("nobody subscribed to {topic} in time");
    }

    /// An hourly job doing `work` run for `moment`, under its own ledger name `name` (so each call
    /// of a test is due once); how many rows or objects it changed.
    pub async fn run_hourly(
        &self,
        name: &'static str,
        work: rally::jobs::service::Work,
        moment: chrono::DateTime<chrono::Utc>,
    ) -> u64 {
        use rally::jobs::schedule::Schedule;
        use rally::jobs::service::{Job, run_due};
        let job = Job {
            name,
            schedule: Schedule::Every(chrono::Duration::hours(1)),
            work,
        };
        run_due(&self.state, &job, "test", moment)
            .await
            .expect("the job runs")
            .expect("the moment was due")
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("sent")
            .text()
            .await
            .expect("text")
    }

    /// Stops the server and waits until it has drained.
    pub async fn stop(mut self) {
        self.halt().await;
    }

    /// Stops the server and waits until it has drained (the database stays).
    async fn halt(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server stopped cleanly");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
        if let Some(db) = self.postgres.take() {
            db.drop_blocking();
        }
    }
}

/// A PostgreSQL database made for one test and dropped after it.
pub struct PostgresDb {
    admin_url: String,
    name: String,
    /// Its URL.
    pub url: String,
}

impl PostgresDb {
    /// A fresh database on `RALLY_TEST_DATABASE_URL`.
    pub async fn create() -> Self {
        let admin_url = std::env::var("RALLY_TEST_DATABASE_URL").expect("RALLY_TEST_DATABASE_URL");
        let name = format!("rally_t_{}", uuid::Uuid::new_v4().simple());
        let admin = Database::connect(&admin_url)
            .await
            .expect("PostgreSQL at RALLY_TEST_DATABASE_URL is reachable");
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        admin.close().await.ok();
        let url = with_database(&admin_url, &name);
        Self {
            admin_url,
            name,
            url,
        }
    }

    /// Drops the database from a thread of its own (Drop cannot await).
    pub fn drop_blocking(self) {
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                if let Ok(admin) = Database::connect(&self.admin_url).await {
                    let _ = admin
                        .execute_unprepared(&format!(
                            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                            self.name
                        ))
                        .await;
                    admin.close().await.ok();
                }
            });
        })
        .join();
    }
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let prefix = match base[authority_end..].find('/') {
        Some(slash) => &base[..authority_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{prefix}/{name}?{query}"),
        None => format!("{prefix}/{name}"),
    }
}

/// Generates one `#[tokio::test]` per backend for each named `async fn(Backend)` of the module.
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(backend) = $crate::common::Backend::postgres_or_skip(stringify!($name)) {
                        super::$name(backend).await;
                    }
                }
            )*
        }
    };
}
