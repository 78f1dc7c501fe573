//! The HTTP surface: the axum router and its tower layers, request ids and metrics, GraphiQL at
//! `/`, `/healthz`, `/readyz` and `/metrics`. The routes of GraphQL over HTTP and the websocket
//! (`graphql::http`, `graphql::ws`) and of media (`media`) are merged in here.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tower::ServiceBuilder;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::graphql;
use crate::graphql::execution::Executor;
use crate::graphql::ws::{self, Sockets};
use crate::state::AppState;

/// The header carrying each request's id (set when the client sent none, echoed back).
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A request's path as logs may show it: a calendar feed's path is its secret, so it is not.
fn logged_path(path: &str) -> &str {
    if path.starts_with("/calendar/") {
        "/calendar/{token}.ics"
    } else {
        path
    }
}

/// What the router's own handlers share.
#[derive(Clone)]
struct HttpState {
    app: AppState,
}

/// Request ids: random UUIDs from the thread's generator (seeded by the OS) rather than a system
/// call per request.
#[derive(Clone, Copy)]
struct RandomIds;

impl MakeRequestId for RandomIds {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
        HeaderValue::from_str(
            id.hyphenated()
                .encode_lower(&mut uuid::Uuid::encode_buffer()),
        )
        .ok()
        .map(RequestId::new)
    }
}

/// The whole HTTP application: `graphql::http`'s, the websocket's and the domains' own routes
/// (`/media`, `/calendar`) with the router's own, under one set of layers (the websocket outside the
/// timeout and compression).
pub fn router(app: AppState, executor: Executor, sockets: Sockets, domains: Router) -> Router {
    let config = &app.config;
    let layers = ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(REQUEST_ID, RandomIds))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
            let id = request
                .headers()
                .get(REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            tracing::info_span!("http", method = %request.method(), path = logged_path(request.uri().path()), request_id = id)
        }))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(cors(&config.cors_origins))
        .layer(CompressionLayer::new())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(config.request_timeout_seconds),
        ));
    // The websocket route sits outside the timeout and compression layers: a socket lives long.
    let live = ws::routes(sockets)
        .route_layer(middleware::from_fn(track_requests))
        .layer(SetRequestIdLayer::new(REQUEST_ID, RandomIds))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID));
    let own = Router::new()
        .route("/", get(graphiql))
        .route("/graphiql/{file}", get(graphiql_asset))
        // Browsers ask for it on every GraphiQL visit; an empty answer keeps their consoles clean.
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(HttpState { app: app.clone() });
    // With RALLY_METRICS_BIND, /metrics is served on that address only (see `metrics_router`).
    let own = if app.config.metrics_bind.is_none() {
        own.merge(metrics_router())
    } else {
        own
    };
    graphql::http::routes(app, executor)
        .merge(own)
        .merge(domains)
        .route_layer(middleware::from_fn(track_requests))
        .layer(layers)
        .merge(live)
}

/// The request headers browsers may send cross-origin: the token, the body's type, the request id,
/// and Apollo Client's own.
const ALLOWED_HEADERS: [&str; 6] = [
    "authorization",
    "content-type",
    "x-request-id",
    "apollographql-client-name",
    "apollographql-client-version",
    "apollo-require-preflight",
];

fn cors(origins: &[String]) -> CorsLayer {
    let base = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST])
        // Listed: the Fetch standard's `*` does not cover `Authorization`, so strict browsers
        // would refuse a cross-origin app's token.
        .allow_headers(ALLOWED_HEADERS.map(HeaderName::from_static))
        .max_age(Duration::from_secs(3600));
    let listed: Vec<HeaderValue> = origins
        .iter()
        .map(|origin| origin.trim())
        .filter(|origin| !origin.is_empty() && *origin != "*")
        .filter_map(|origin| HeaderValue::from_str(origin).ok())
        .collect();
    // Answers vary by origin only when the allowed origin is echoed back: with `*` they are the same
    // for every origin, and so are the preflights' (fixed lists, nothing mirrored). A `Vary` on
    // every answer would only cost its bytes and split shared caches by origin for nothing.
    if listed.is_empty() {
        base.allow_origin(Any).vary(Vec::<HeaderName>::new())
    } else {
        base.allow_origin(AllowOrigin::list(listed))
            .vary([header::ORIGIN])
    }
}

/// The process-wide Prometheus recorder (installed once, shared by every app in the process).
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[
                0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ])
            .unwrap_or_else(|_| PrometheusBuilder::new())
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
        }
        handle
    })
}

async fn track_requests(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |path| path.as_str())
        .to_owned();
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let handles = RouteMetrics::of(&route);
    handles.requests(method, response.status()).increment(1);
    handles.duration.record(started.elapsed().as_secs_f64());
    response
}

/// The HTTP metrics of one route, registered on first use and kept (routes are the router's own,
/// a bounded set; registering a labelled metric per request costs more than the request's routing).
struct RouteMetrics {
    route: String,
    duration: metrics::Histogram,
    requests: std::sync::Mutex<HashMap<(&'static str, StatusCode), metrics::Counter>>,
}

impl RouteMetrics {
    fn of(route: &str) -> Arc<Self> {
        static ROUTES: OnceLock<std::sync::Mutex<HashMap<String, Arc<RouteMetrics>>>> =
            OnceLock::new();
        let mut routes = lock(ROUTES.get_or_init(Default::default));
        if let Some(known) = routes.get(route) {
            return known.clone();
        }
        let known = Arc::new(Self {
            route: route.to_owned(),
            duration: metrics::histogram!("rally_http_request_duration_seconds", "route" => route.to_owned()),
            requests: Default::default(),
        });
        routes.insert(route.to_owned(), known.clone());
        known
    }

    fn requests(&self, method: &'static str, status: StatusCode) -> metrics::Counter {
        lock(&self.requests)
            .entry((method, status))
            .or_insert_with(|| {
                metrics::counter!("rally_http_requests_total", "route" => self.route.clone(), "method" => method, "status" => status.as_u16().to_string())
            })
            .clone()
    }
}

/// The method as a metrics label: the standard ones by name, any other as `OTHER` (a client can
/// invent methods without end).
fn method_label(method: &Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        _ => "OTHER",
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// GraphiQL's page and scripts, vendored by `scripts/vendor-graphiql` and embedded in the binary so
/// GraphiQL works without internet access: (name, content type, bytes).
const GRAPHIQL_ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "graphiql.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/graphiql/graphiql.min.js"),
    ),
    (
        "graphiql.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/graphiql/graphiql.min.css"),
    ),
    (
        "react.production.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/graphiql/react.production.min.js"),
    ),
    (
        "react-dom.production.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/graphiql/react-dom.production.min.js"),
    ),
    (
        "graphql-ws.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/graphiql/graphql-ws.min.js"),
    ),
    (
        "LICENSES.txt",
        "text/plain; charset=utf-8",
        include_bytes!("../assets/graphiql/LICENSES.txt"),
    ),
];

/// GraphiQL's page (`assets/graphiql/index.html`, embedded).
const GRAPHIQL_PAGE: &str = include_str!("../assets/graphiql/index.html");

/// The Content-Security-Policy of GraphiQL's page: its own scripts and its one inline script (by
/// hash) only, requests to this origin only (HTTP and websocket), never framed.
fn graphiql_policy() -> &'static str {
    static POLICY: OnceLock<String> = OnceLock::new();
    POLICY.get_or_init(|| {
        let inline = GRAPHIQL_PAGE
            .split("<script>")
            .skip(1)
            .filter_map(|rest| rest.split_once("</script>").map(|(script, _)| script))
            .map(|script| {
                use base64::Engine;
                use sha2::{Digest, Sha256};
                let digest = Sha256::digest(script.as_bytes());
                format!(
                    " 'sha256-{}'",
                    base64::engine::general_purpose::STANDARD.encode(digest)
                )
            })
            .collect::<String>();
        format!(
            "default-src 'none'; script-src 'self'{inline}; style-src 'self' 'unsafe-inline'; \
             connect-src 'self'; img-src 'self' data:; font-src 'self' data:; base-uri 'none'; \
             form-action 'none'; frame-ancestors 'none'"
        )
    })
}

async fn graphiql() -> Response {
    (
        [
            (header::CONTENT_SECURITY_POLICY, graphiql_policy()),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        Html(GRAPHIQL_PAGE),
    )
        .into_response()
}

async fn graphiql_asset(Path(file): Path<String>) -> Response {
    let Some((_, content_type, bytes)) = GRAPHIQL_ASSETS.iter().find(|(name, ..)| *name == file)
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    (
        [
            (header::CONTENT_TYPE, *content_type),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        *bytes,
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok"
}

/// Ready when the database answers. The broker's state is reported but does not make the instance
/// unready: while Redis is away, queries, mutations and local live updates still work.
async fn readyz(State(http): State<HttpState>) -> Response {
    let broker = http.app.live.status();
    let broker = serde_json::json!({
        "kind": broker.kind,
        "state": if broker.connected { "connected" } else { "reconnecting" },
    });
    // Every instance shares the media store and the broker, so their trouble is reported but
    // keeps no instance out of the balancer (taking all out helps nobody); the database does.
    let (database, media_reachable) = tokio::join!(http.app.db.ping(), http.app.media.reachable());
    let media = serde_json::json!({
        "kind": http.app.media.kind(),
        "state": if media_reachable { "ok" } else { "unreachable" },
    });
    let limits = http.app.auth_limits.store_status();
    match database {
        Ok(()) => Json(serde_json::json!({
            "status": "ready", "database": "ok", "broker": broker, "media": media, "limits": limits,
        }))
        .into_response(),
        Err(err) => {
            tracing::warn!(error = %err, "database not reachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({
                    "status": "unavailable", "database": "unreachable", "broker": broker,
                    "media": media, "limits": limits,
                })),
            )
                .into_response()
        }
    }
}

/// `/metrics` alone: merged into the API's router, or served on `RALLY_METRICS_BIND`.
pub fn metrics_router() -> Router {
    Router::new().route("/metrics", get(render_metrics))
}

async fn render_metrics() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        prometheus().render(),
    )
        .into_response()
}
