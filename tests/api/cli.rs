//! The `rally` binary itself: the committed schema, start-up checks, and a real start with defaults.

use std::process::{Command, Stdio};
use std::time::Duration;

const RALLY: &str = env!("CARGO_BIN_EXE_rally");

/// `schema.graphql` is what `rally schema` prints. Set `RALLY_UPDATE_SCHEMA=1` to rewrite it.
#[test]
fn the_committed_schema_matches_the_code() {
    let output = Command::new(RALLY)
        .arg("schema")
        .output()
        .expect("rally schema runs");
    assert!(output.status.success());
    let printed = String::from_utf8(output.stdout).expect("utf-8");
    assert_eq!(printed, rally::graphql::schema::sdl());
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql");
    if std::env::var_os("RALLY_UPDATE_SCHEMA").is_some() {
        std::fs::write(path, &printed).expect("schema.graphql written");
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == printed,
        "schema.graphql is stale: run `RALLY_UPDATE_SCHEMA=1 cargo test --test api schema` (or `rally schema > schema.graphql`)"
    );
}

#[test]
fn production_refuses_to_start_without_a_secret() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = Command::new(RALLY)
        .arg("serve")
        .env_clear()
        .env("RALLY_ENV", "production")
        .env("RALLY_CORS_ORIGINS", "https://app.example")
        .env("RALLY_DATA_DIR", dir.path())
        .env("RALLY_BIND", "127.0.0.1:0")
        .output()
        .expect("rally runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("RALLY_JWT_SECRET"), "{stderr}");

    let short = Command::new(RALLY)
        .arg("serve")
        .env_clear()
        .env("RALLY_ENV", "production")
        .env("RALLY_CORS_ORIGINS", "https://app.example")
        .env("RALLY_JWT_SECRET", "too-short")
        .env("RALLY_DATA_DIR", dir.path())
        .output()
        .expect("rally runs");
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("32 bytes"));
}

/// A setting that would break later (a refresh-token lifetime past the calendar's end overflowed
/// every login) stops the start, naming itself.
#[test]
fn an_out_of_bounds_setting_refuses_to_start_and_names_itself() {
    for (name, value) in [
        ("RALLY_REFRESH_TOKEN_TTL_DAYS", "18446744073709551615"),
        ("RALLY_ACCESS_TOKEN_TTL_SECONDS", "9223372036854775807"),
        ("RALLY_MAX_BODY_BYTES", "0"),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let output = Command::new(RALLY)
            .arg("serve")
            .env_clear()
            .env("RALLY_DATA_DIR", dir.path())
            .env("RALLY_BIND", "127.0.0.1:0")
            .env(name, value)
            .output()
            .expect("rally runs");
        assert!(!output.status.success(), "{name}={value} must not start");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(name), "{name} is named: {stderr}");
        assert!(
            !dir.path().join("rally.db").exists(),
            "refused before touching storage"
        );
    }
}

/// With nothing configured, `rally` makes its data dir, SQLite file, media folder and secret, serves,
/// and stops cleanly on SIGTERM.
#[tokio::test]
async fn the_binary_starts_with_embedded_defaults_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        probe.local_addr().expect("addr").port()
    };
    let mut child = Command::new(RALLY)
        .current_dir(dir.path())
        .env_clear()
        .env("RALLY_BIND", format!("127.0.0.1:{port}"))
        .env("RALLY_ARGON2_MEMORY_KIB", "256")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("rally starts");
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/readyz");
    let mut ready = false;
    for _ in 0..100 {
        if let Ok(response) = client.get(&url).send().await {
            ready = response.status() == 200;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let data = dir.path().join("rally-data");
    let made = (
        data.join("rally.db").exists(),
        data.join("media").is_dir(),
        data.join("jwt-secret").exists(),
    );
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let status = child.wait().expect("rally exits");
    assert!(ready, "rally did not become ready");
    assert_eq!(made, (true, true, true));
    assert!(status.success(), "rally exited with {status}");
}

fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
    probe.local_addr().expect("addr").port()
}

/// `rally serve` as a child process on a free port with its data in a temporary folder, plus
/// `settings`; stopped with SIGTERM when dropped.
struct Served {
    child: std::process::Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Served {
    async fn start(settings: &[(&str, String)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let child = Command::new(RALLY)
            .arg("serve")
            .env_clear()
            .env("RALLY_DATA_DIR", dir.path())
            .env("RALLY_BIND", format!("127.0.0.1:{port}"))
            .env("RALLY_ARGON2_MEMORY_KIB", "256")
            .envs(settings.iter().map(|(name, value)| (name, value)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rally starts");
        let mut served = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let client = reqwest::Client::new();
        for _ in 0..100 {
            if let Ok(Some(status)) = served.child.try_wait() {
                panic!("rally exited before it served: {status}");
            }
            let health = client.get(format!("{}/healthz", served.base)).send();
            if health.await.is_ok() {
                return served;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("rally never answered /healthz")
    }
}

/// The body of a GET of `url`.
async fn text_of(client: &reqwest::Client, url: &str) -> String {
    let response = client.get(url).send().await.expect("sent");
    response.text().await.expect("text")
}

impl Drop for Served {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        for _ in 0..150 {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Client-chosen operation names label at most RALLY_METRICS_MAX_OPERATIONS series (the rest are
/// `other`), and with RALLY_METRICS_BIND `/metrics` is served on that address and not on the API's.
#[tokio::test]
async fn metrics_labels_are_bounded_and_served_on_their_own_address() {
    let metrics = free_port();
    let rally = Served::start(&[
        ("RALLY_METRICS_BIND", format!("127.0.0.1:{metrics}")),
        ("RALLY_METRICS_MAX_OPERATIONS", "5".to_owned()),
    ])
    .await;
    let client = reqwest::Client::new();
    let base = &rally.base;
    for n in 0..20 {
        let body = serde_json::json!({ "query": format!("query Op{n} {{ __typename }}") });
        let answer = client
            .post(format!("{base}/graphql"))
            .json(&body)
            .send()
            .await
            .expect("sent");
        assert_eq!(answer.status(), 200);
    }
    let on_api = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("sent");
    let text = text_of(&client, &format!("http://127.0.0.1:{metrics}/metrics")).await;
    drop(rally);
    assert_eq!(on_api.status(), 404, "/metrics is not on the API's address");
    let labels: std::collections::HashSet<&str> = text
        .lines()
        .filter(|line| line.starts_with("rally_graphql_operations_total"))
        .filter_map(|line| line.split("operation=\"").nth(1)?.split('"').next())
        .collect();
    assert!(labels.contains("other"), "{labels:?}");
    assert_eq!(labels.len(), 6, "5 names and `other`: {labels:?}");
}

/// The socket and subscription gauges count what is open, coming and going. Run as its own
/// process: the metrics recorder is process-wide, and tests running beside this one in the test
/// process open and close sockets of their own.
#[tokio::test]
async fn metrics_count_websockets_and_subscriptions_coming_and_going() {
    let rally = Served::start(&[]).await;
    let client = reqwest::Client::new();
    let base = &rally.base;
    let counts = || async {
        let text = text_of(&client, &format!("{base}/metrics")).await;
        let gauge = |name: &str, label: &str| -> f64 {
            text.lines()
                .filter(|line| line.starts_with(name) && line.contains(label))
                .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        (
            gauge("rally_websockets_open", ""),
            gauge("rally_subscriptions_active", "field=\"eventStatusChanged\""),
        )
    };
    let until = |want: (f64, f64)| async move {
        let mut seen = (f64::NAN, f64::NAN);
        for _ in 0..100 {
            seen = counts().await;
            if seen == want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        seen
    };
    let mut sockets = Vec::new();
    for n in 0..3 {
        let mut socket = crate::common::WsClient::connect(
            &format!("{}/graphql/ws", base.replace("http://", "ws://")),
            crate::common::TRANSPORT_WS,
        )
        .await;
        socket.init(serde_json::json!({})).await;
        socket
            .subscribe(
                &n.to_string(),
                "subscription { eventStatusChanged { id } }",
                serde_json::json!({}),
            )
            .await;
        sockets.push(socket);
    }
    let open = until((3.0, 3.0)).await;
    drop(sockets);
    let closed = until((0.0, 0.0)).await;
    drop(rally);
    assert_eq!(open, (3.0, 3.0), "3 sockets, 3 subscriptions");
    assert_eq!(closed, (0.0, 0.0), "all gone once the sockets close");
}
