//! Logins under load: how many argon2id logins per second the configured cost allows, and what they
//! do to the latency of everything else (`{ __typename }` p99 while logins run, against idle).

use std::time::Duration;

use serde_json::json;

use crate::http::{Figures, TRIVIAL, load, loops_per_second};
use crate::rally::{Rally, signup};

/// What the run measured.
pub struct AuthFigures {
    pub logins_per_second: f64,
    pub login_errors: u64,
    pub idle: Figures,
    pub loaded: Figures,
}

/// Concurrent requests of the `{ __typename }` probe.
const PROBE_CONCURRENCY: usize = 4;

/// Signs `users` people up, then measures the probe alone and with `users` login loops beside it.
pub async fn logins_under_load(
    rally: &Rally,
    tag: &str,
    users: usize,
    duration: Duration,
) -> anyhow::Result<AuthFigures> {
    let url = rally.url();
    let password = "benchmark-password";
    let handles = sign_up(&url, tag, users, password).await?;

    let idle = load(&url, TRIVIAL.to_owned(), None, PROBE_CONCURRENCY, duration).await;
    let (logins, loaded) = tokio::join!(
        logins_per_second(&url, &handles, password, duration),
        load(&url, TRIVIAL.to_owned(), None, PROBE_CONCURRENCY, duration),
    );
    let (logins_per_second, login_errors) = logins?;
    Ok(AuthFigures {
        logins_per_second,
        login_errors,
        idle,
        loaded,
    })
}

/// Signs up `users` people on `url` (handles `login_{tag}_{n}`) with `password`.
pub async fn sign_up(
    url: &str,
    tag: &str,
    users: usize,
    password: &str,
) -> anyhow::Result<Vec<String>> {
    let http = reqwest::Client::new();
    let mut handles = Vec::with_capacity(users);
    for n in 0..users {
        let handle = format!("login_{tag}_{n}");
        signup(&http, url, &handle, password).await?;
        handles.push(handle);
    }
    Ok(handles)
}

/// Successful logins per second and failures over `duration`, one login loop per handle.
pub async fn logins_per_second(
    url: &str,
    handles: &[String],
    password: &str,
    duration: Duration,
) -> anyhow::Result<(f64, u64)> {
    let http = reqwest::Client::new();
    let bodies: Vec<String> = handles
        .iter()
        .map(|handle| {
            json!({
                "query": "mutation($l: String!, $p: String!) { login(login: $l, password: $p) { accessToken } }",
                "variables": { "l": handle, "p": password },
            })
            .to_string()
        })
        .collect();
    let url = url.to_owned();
    loops_per_second(bodies, duration, move |body| {
        let request = http
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send();
        async move {
            match request.await {
                Ok(response) => response
                    .text()
                    .await
                    .is_ok_and(|text| text.contains("accessToken") && !text.contains("\"errors\"")),
                Err(_) => false,
            }
        }
    })
    .await
}
