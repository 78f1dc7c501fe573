//! Logins under load: how many argon2id logins per second the configured cost allows, and what they
//! do to the latency of everything else (`{ __typename }` p99 while logins run, against idle).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::http::{Figures, TRIVIAL, load};
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
    let http = reqwest::Client::new();
    let password = "benchmark-password";
    let mut handles = Vec::with_capacity(users);
    for n in 0..users {
        let handle = format!("login_{tag}_{n}");
        signup(&http, &url, &handle, password).await?;
        handles.push(handle);
    }

    let idle = load(&url, TRIVIAL.to_owned(), None, PROBE_CONCURRENCY, duration).await;

    let logins = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let loops: Vec<_> = handles
        .into_iter()
        .map(|handle| {
            let (http, url, logins, errors) = (http.clone(), url.clone(), logins.clone(), errors.clone());
            let body = json!({
                "query": "mutation($l: String!, $p: String!) { login(login: $l, password: $p) { accessToken } }",
                "variables": { "l": handle, "p": password },
            })
            .to_string();
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let response = http
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await;
                    let ok = match response {
                        Ok(response) => response
                            .text()
                            .await
                            .is_ok_and(|text| text.contains("accessToken") && !text.contains("\"errors\"")),
                        Err(_) => false,
                    };
                    if ok {
                        logins.fetch_add(1, Ordering::Relaxed);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let loaded = load(&url, TRIVIAL.to_owned(), None, PROBE_CONCURRENCY, duration).await;
    for login in loops {
        login.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(AuthFigures {
        logins_per_second: logins.load(Ordering::Relaxed) as f64 / elapsed,
        login_errors: errors.load(Ordering::Relaxed),
        idle,
        loaded,
    })
}
