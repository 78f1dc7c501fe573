//! Two `rally serve` processes sharing PostgreSQL and Redis: a subscriber on one sees changes made on
//! the other, keeps working while Redis is cut off, and is whole again once Redis is back; a session
//! ended on one is ended on the other.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::common::gql::{AUTH_FIELDS, session_from};
use crate::common::{PostgresDb, Session, TEST_SECRET, TRANSPORT_WS, WsClient};

/// A TCP proxy in front of Redis that the test can cut and restore.
struct Proxy {
    address: SocketAddr,
    up: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy binds");
        let address = listener.local_addr().expect("addr");
        let up = Arc::new(AtomicBool::new(true));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = {
            let (up, links) = (up.clone(), links.clone());
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        continue; // dropped: the connection is refused as soon as it opens
                    }
                    let link = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    links.lock().await.push(link);
                }
            })
        };
        Self {
            address,
            up,
            links,
            accept,
        }
    }

    /// Cuts every open connection and refuses new ones.
    async fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for link in self.links.lock().await.drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// A `rally serve` child process, killed when dropped.
struct Instance {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Instance {
    fn start(database_url: &str, redis_url: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("addr")
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_rally"))
            .arg("serve")
            .env_clear()
            .env("RALLY_BIND", format!("127.0.0.1:{port}"))
            .env("RALLY_DATA_DIR", dir.path())
            .env("RALLY_DATABASE_URL", database_url)
            .env("RALLY_REDIS_URL", redis_url)
            .env("RALLY_JWT_SECRET", TEST_SECRET)
            .env("RALLY_ARGON2_MEMORY_KIB", "256")
            .env("RALLY_ARGON2_ITERATIONS", "1")
            .env("RALLY_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("rally starts");
        Self {
            child,
            base: format!("127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    async fn broker_state(&self, http: &reqwest::Client) -> Option<String> {
        let ready: Value = http
            .get(format!("http://{}/readyz", self.base))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        ready["broker"]["state"].as_str().map(str::to_owned)
    }

    /// Waits until `/readyz` reports the broker `state`.
    async fn wait_for_broker(&self, http: &reqwest::Client, state: &str) {
        for _ in 0..200 {
            if self.broker_state(http).await.as_deref() == Some(state) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{} never reported broker {state}", self.base);
    }

    async fn gql(
        &self,
        http: &reqwest::Client,
        token: Option<&str>,
        query: &str,
        variables: Value,
    ) -> Value {
        let mut request = http
            .post(format!("http://{}/graphql", self.base))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let body: Value = request
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("json");
        assert!(body["errors"].is_null(), "{body}");
        body["data"].clone()
    }

    async fn ws(&self) -> WsClient {
        WsClient::connect(&format!("ws://{}/graphql/ws", self.base), TRANSPORT_WS).await
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const EVENT_UPDATED: &str = "subscription($id: ID!) { eventUpdated(eventId: $id) { title } }";
const RENAME: &str =
    "mutation($id: ID!, $t: String!) { updateEvent(id: $id, input: { title: $t }) { title } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_on_one_instance_reaches_subscribers_on_another_and_survives_a_redis_outage() {
    let test = "a_change_on_one_instance_reaches_subscribers_on_another";
    let Some(redis_url) = crate::common::redis_url_or_skip(test) else {
        return;
    };
    if crate::common::Backend::postgres_or_skip(test).is_none() {
        return;
    }
    let redis: SocketAddr = redis_url
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .parse()
        .expect("RALLY_TEST_REDIS_URL is redis://host:port");
    let proxy = Proxy::start(redis).await;
    let database = PostgresDb::create().await;
    let http = reqwest::Client::new();
    let proxied = format!("redis://{}", proxy.address);
    // Start one instance first so the migrations run once, then the second.
    let a = Instance::start(&database.url, &proxied);
    a.wait_for_broker(&http, "connected").await;
    let b = Instance::start(&database.url, &proxied);
    b.wait_for_broker(&http, "connected").await;

    let signup = b
        .gql(
            &http,
            None,
            &format!("mutation {{ signup(input: {{ handle: \"host\", email: \"host@example.com\", password: \"12345678\" }}) {{ {AUTH_FIELDS} }} }}"),
            json!({}),
        )
        .await;
    let host = session_from(&signup["signup"]);
    let token = Some(host.access.as_str());
    let created = b
        .gql(&http, token, "mutation { createEvent(input: { title: \"Start\", startsAt: \"2030-01-01T20:00:00Z\" }) { id } }", json!({}))
        .await;
    let id = created["createEvent"]["id"].clone();

    // Subscribers on A (the other instance) and on B (the writer's own).
    let mut on_a = a.ws().await;
    on_a.init(json!({ "authorization": format!("Bearer {}", host.access) }))
        .await;
    on_a.subscribe("1", EVENT_UPDATED, json!({ "id": id }))
        .await;
    assert_eq!(on_a.next_data("1").await["eventUpdated"]["title"], "Start");
    let mut on_b = b.ws().await;
    on_b.init(json!({})).await;
    on_b.subscribe("1", EVENT_UPDATED, json!({ "id": id }))
        .await;
    assert_eq!(on_b.next_data("1").await["eventUpdated"]["title"], "Start");

    b.gql(&http, token, RENAME, json!({ "id": id, "t": "Across" }))
        .await;
    assert_eq!(
        on_a.next_data("1").await["eventUpdated"]["title"],
        "Across",
        "B's change reached A"
    );
    assert_eq!(on_b.next_data("1").await["eventUpdated"]["title"], "Across");

    // Redis goes away: mutations still work and B's own subscriber still hears B's change.
    proxy.cut().await;
    a.wait_for_broker(&http, "reconnecting").await;
    let renamed = b
        .gql(
            &http,
            token,
            RENAME,
            json!({ "id": id, "t": "During outage" }),
        )
        .await;
    assert_eq!(renamed["updateEvent"]["title"], "During outage");
    assert_eq!(
        on_b.next_data("1").await["eventUpdated"]["title"],
        "During outage"
    );

    // Redis is back: A reconnects by itself and resynchronises (it missed the outage change).
    proxy.restore();
    a.wait_for_broker(&http, "connected").await;
    assert_eq!(
        on_a.next_data("1").await["eventUpdated"]["title"],
        "During outage",
        "A caught up"
    );
    b.wait_for_broker(&http, "connected").await;
    // B's publisher reconnects on its next publish; give it one message to do so.
    let mut delivered = false;
    for attempt in 0..20 {
        let title = format!("After restore {attempt}");
        b.gql(&http, token, RENAME, json!({ "id": id, "t": title }))
            .await;
        let seen = tokio::time::timeout(Duration::from_millis(500), on_a.next_data("1")).await;
        if let Ok(data) = seen {
            assert!(
                data["eventUpdated"]["title"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("After restore")
            );
            delivered = true;
            break;
        }
    }
    assert!(
        delivered,
        "cross-instance delivery resumed without restarting Rally"
    );
    drop((on_a, on_b, a, b));
    database.drop_blocking();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaderboard_on_one_instance_follows_cheers_recorded_on_another() {
    let test = "a_leaderboard_on_one_instance_follows_cheers_recorded_on_another";
    let Some((database, http, a, b)) = two_instances(test).await else {
        return;
    };
    let sessions = sign_up(&b, &http, &["organizer", "guest"]).await;
    let token = Some(sessions[0].access.as_str());
    let created = b
        .gql(&http, token, "mutation { createEvent(input: { title: \"Bar\", startsAt: \"2030-01-01T20:00:00Z\" }) { id } }", json!({}))
        .await;
    let id = created["createEvent"]["id"].clone();
    b.gql(
        &http,
        token,
        "mutation($id: ID!) { updateEvent(id: $id, input: { status: LIVE }) { id } }",
        json!({ "id": id }),
    )
    .await;
    // The guest asks for a cup; the organizer opens it with their code.
    let code = b
        .gql(
            &http,
            Some(sessions[1].access.as_str()),
            "mutation($id: ID!) { requestCupCode(eventId: $id) { code } }",
            json!({ "id": id }),
        )
        .await;
    let code = code["requestCupCode"]["code"].clone();
    let cup = b
        .gql(
            &http,
            token,
            "mutation($id: ID!, $c: String!) { openCupSession(eventId: $id, handle: \"guest\", code: $c) { id } }",
            json!({ "id": id, "c": code }),
        )
        .await;
    let cup = cup["openCupSession"]["id"].clone();

    let mut phone = a.ws().await;
    phone.init(json!({})).await;
    phone
        .subscribe("b", "subscription($e: ID!) { leaderboard(eventId: $e) { entries { score user { handle } } } }", json!({ "e": id }))
        .await;
    assert_eq!(
        phone.next_data("b").await["leaderboard"]["entries"][0]["score"],
        0
    );
    // Concurrent cheers on B, from many requests at once: none lost, and A's board ends at the total.
    let calls = (0..50).map(|_| {
        b.gql(
            &http,
            token,
            "mutation($s: ID!) { recordCheers(sessionId: $s, count: 2) { id } }",
            json!({ "s": cup }),
        )
    });
    futures_util::future::join_all(calls).await;
    let mut score = 0;
    while score != 100 {
        let board = phone.next_data("b").await;
        let now = board["leaderboard"]["entries"][0]["score"]
            .as_i64()
            .expect("score");
        assert!(now >= score, "the board went back from {score} to {now}");
        score = now;
    }
    drop((phone, a, b));
    database.drop_blocking();
}

/// Two instances on a fresh PostgreSQL database and the machine's Redis, both connected to it;
/// `None` (with the reason printed) when a service is absent and not required.
async fn two_instances(test: &str) -> Option<(PostgresDb, reqwest::Client, Instance, Instance)> {
    let redis_url = crate::common::redis_url_or_skip(test)?;
    crate::common::Backend::postgres_or_skip(test)?;
    let database = PostgresDb::create().await;
    let http = reqwest::Client::new();
    let a = Instance::start(&database.url, &redis_url);
    a.wait_for_broker(&http, "connected").await;
    let b = Instance::start(&database.url, &redis_url);
    b.wait_for_broker(&http, "connected").await;
    Some((database, http, a, b))
}

/// Signs `handles` up on `instance`.
async fn sign_up(instance: &Instance, http: &reqwest::Client, handles: &[&str]) -> Vec<Session> {
    let mut sessions = Vec::new();
    for handle in handles {
        let signup = instance
            .gql(
                http,
                None,
                &format!("mutation {{ signup(input: {{ handle: \"{handle}\", email: \"{handle}@example.com\", password: \"12345678\" }}) {{ {AUTH_FIELDS} }} }}"),
                json!({}),
            )
            .await;
        sessions.push(session_from(&signup["signup"]));
    }
    sessions
}

/// The `rally_subscriptions_active` gauge of `field` on an instance: the server's own signal that a
/// subscription is registered.
async fn active_subscriptions(instance: &Instance, http: &reqwest::Client, field: &str) -> f64 {
    let text = http
        .get(format!("http://{}/metrics", instance.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .filter(|line| {
            line.starts_with("rally_subscriptions_active")
                && line.contains(&format!("field=\"{field}\""))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_on_one_instance_hears_of_bookings_and_cancellations_made_on_another() {
    let test = "an_owner_on_one_instance_hears_of_bookings_and_cancellations_made_on_another";
    let Some((database, http, a, b)) = two_instances(test).await else {
        return;
    };
    let sessions = sign_up(&b, &http, &["coach", "client"]).await;
    let (coach, client) = (&sessions[0], &sessions[1]);
    let start = (chrono::Utc::now() + chrono::Duration::days(2)).format("%Y-%m-%dT10:00:00Z");
    let end = (chrono::Utc::now() + chrono::Duration::days(2)).format("%Y-%m-%dT11:00:00Z");
    let slot = b
        .gql(
            &http,
            Some(&coach.access),
            "mutation($i: AvailabilityInput!) { setAvailability(input: $i) { id } }",
            json!({ "i": { "startTime": start.to_string(), "endTime": end.to_string(), "title": "Session" } }),
        )
        .await;
    let slot = slot["setAvailability"]["id"].clone();

    let mut phone = a.ws().await;
    phone
        .init(json!({ "authorization": format!("Bearer {}", coach.access) }))
        .await;
    phone
        .subscribe(
            "m",
            "subscription { myMeetings { status participant { handle } cancelledBy { handle } } }",
            json!({}),
        )
        .await;
    let mut registered = false;
    for _ in 0..200 {
        if active_subscriptions(&a, &http, "myMeetings").await >= 1.0 {
            registered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(registered, "the subscription is registered on A");

    let booked = b
        .gql(
            &http,
            Some(&client.access),
            "mutation($id: ID!) { bookAvailability(id: $id) { id } }",
            json!({ "id": slot }),
        )
        .await;
    let booking = phone.next_data("m").await;
    assert_eq!(booking["myMeetings"]["status"], "CONFIRMED");
    assert_eq!(booking["myMeetings"]["participant"]["handle"], "client");
    b.gql(
        &http,
        Some(&client.access),
        "mutation($id: ID!) { cancelMeeting(id: $id, reason: \"ill\") { id } }",
        json!({ "id": booked["bookAvailability"]["id"] }),
    )
    .await;
    let cancellation = phone.next_data("m").await;
    assert_eq!(cancellation["myMeetings"]["status"], "CANCELLED");
    assert_eq!(
        cancellation["myMeetings"]["cancelledBy"]["handle"],
        "client"
    );
    drop((phone, a, b));
    database.drop_blocking();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_on_one_instance_ends_the_session_on_another_within_a_second() {
    let test = "a_logout_on_one_instance_ends_the_session_on_another_within_a_second";
    let Some((database, http, a, b)) = two_instances(test).await else {
        return;
    };
    let ann = sign_up(&b, &http, &["ann"]).await.remove(0);
    let me = |instance: &Instance| {
        http.post(format!("http://{}/graphql", instance.base))
            .bearer_auth(&ann.access)
            .json(&json!({ "query": "{ me { handle } }" }))
            .send()
    };
    let before: Value = me(&a).await.expect("sent").json().await.expect("json");
    assert_eq!(before["data"]["me"]["handle"], "ann", "{before}");
    let mut socket = a.ws().await;
    socket
        .init(json!({ "authorization": format!("Bearer {}", ann.access) }))
        .await;

    b.gql(
        &http,
        None,
        "mutation($t: String!) { logout(refreshToken: $t) }",
        json!({ "t": ann.refresh }),
    )
    .await;
    let ended = tokio::time::Instant::now();
    let closed = socket.closed().await;
    assert_eq!(
        closed.code, 4403,
        "A closed the session's socket: {closed:?}"
    );
    let after: Value = me(&a).await.expect("sent").json().await.expect("json");
    assert_eq!(
        after["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "A refuses the ended session's token: {after}"
    );
    assert!(
        ended.elapsed() < Duration::from_secs(1),
        "within a second: {:?}",
        ended.elapsed()
    );
    drop((socket, a, b));
    database.drop_blocking();
}
