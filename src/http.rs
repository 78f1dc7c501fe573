//! The HTTP surface: the axum router, its tower layers, and every endpoint that is not GraphQL
//! resolution itself.
//!
//! `/graphql` follows the GraphQL-over-HTTP spec: `POST` (JSON or multipart uploads) and `GET`
//! (queries only); responses are `application/graphql-response+json` when the client accepts it
//! (request errors then get 400) and `application/json` otherwise (always 200 once the request
//! parsed). Bodies are read with a size limit chosen by content type (JSON or multipart upload), so
//! an oversized request is refused with 413 before it is buffered whole. Also served: GraphiQL at `/`, `/healthz`, `/readyz`, `/metrics` and `/media/{key}`.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_graphql::http::MultipartOptions;
use async_graphql::parser::types::OperationType;
use async_graphql::{ServerError, Value};
use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
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

use async_graphql_axum::GraphQLProtocol;
use axum::extract::ws::WebSocketUpgrade;

use crate::auth::{ClientAddr, Viewer};
use crate::error::code;
use crate::graphql::RallySchema;
use crate::graphql::documents::Documents;
use crate::graphql::ws::Sockets;
use crate::state::AppState;

/// The header carrying each request's id (set when the client sent none, echoed back).
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Media type of GraphQL-over-HTTP responses.
const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

/// What the router's handlers share, behind one `Arc` so each request clones a pointer.
#[derive(Clone)]
struct HttpState(Arc<Handlers>);

impl std::ops::Deref for HttpState {
    type Target = Handlers;

    fn deref(&self) -> &Handlers {
        &self.0
    }
}

/// The handlers' shared parts.
struct Handlers {
    app: AppState,
    schema: RallySchema,
    sockets: Sockets,
    documents: Documents,
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

/// Parsed documents kept for reuse (an app sends a few hundred distinct documents at most).
const DOCUMENT_CACHE: usize = 1024;

/// The whole HTTP application.
pub fn router(app: AppState, schema: RallySchema, sockets: Sockets) -> Router {
    let config = &app.config;
    let layers = ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(REQUEST_ID, RandomIds))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
            let id = request
                .headers()
                .get(REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            tracing::info_span!("http", method = %request.method(), path = request.uri().path(), request_id = id)
        }))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(cors(&config.cors_origins))
        .layer(CompressionLayer::new())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(config.request_timeout_seconds),
        ));
    let state = HttpState(Arc::new(Handlers {
        app,
        schema,
        sockets,
        documents: Documents::new(DOCUMENT_CACHE),
    }));
    // The websocket route sits outside the timeout and compression layers: a socket lives long.
    let live = Router::new()
        .route("/graphql/ws", get(graphql_ws))
        .route_layer(middleware::from_fn(track_requests))
        .layer(SetRequestIdLayer::new(REQUEST_ID, RandomIds))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .with_state(state.clone());
    Router::new()
        .route("/graphql", get(graphql).post(graphql))
        .route("/", get(graphiql))
        .route("/graphiql/{file}", get(graphiql_asset))
        // Browsers ask for it on every GraphiQL visit; an empty answer keeps their consoles clean.
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .route("/media/{key}", get(media))
        .route("/media/rounds/{round}/{file}", get(round_photo))
        .route_layer(middleware::from_fn(track_requests))
        .layer(layers)
        .with_state(state)
        .merge(live)
}

async fn graphql_ws(
    State(http): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    _protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    // The first protocol of the client's list that we speak (`GraphQLProtocol` refuses the upgrade
    // when there is none).
    let legacy = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .map(str::trim)
                .find(|p| *p == "graphql-transport-ws" || *p == "graphql-ws")
        })
        == Some("graphql-ws");
    let client = client_addr(&headers, peer, http.app.config.trust_proxy_headers);
    http.sockets.upgrade(upgrade, legacy, client)
}

fn cors(origins: &[String]) -> CorsLayer {
    let base = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST])
        .allow_headers(Any)
        .max_age(Duration::from_secs(3600));
    let listed: Vec<HeaderValue> = origins
        .iter()
        .map(|origin| origin.trim())
        .filter(|origin| !origin.is_empty() && *origin != "*")
        .filter_map(|origin| HeaderValue::from_str(origin).ok())
        .collect();
    if listed.is_empty() {
        base.allow_origin(Any)
    } else {
        base.allow_origin(AllowOrigin::list(listed))
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
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("rally_http_requests_total", "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!("rally_http_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// How the response body is labelled, from the request's `Accept`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `application/graphql-response+json`: request errors are 4xx.
    GraphqlResponse,
    /// Legacy `application/json`: 200 for anything that parsed.
    Json,
}

impl Mode {
    /// `None` when the client accepts neither media type (406).
    fn negotiate(headers: &HeaderMap) -> Option<Self> {
        let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
            return Some(Self::Json);
        };
        let types: Vec<&str> = accept
            .split(',')
            .map(|part| part.split(';').next().unwrap_or("").trim())
            .collect();
        if types
            .iter()
            .any(|t| t.eq_ignore_ascii_case(GRAPHQL_RESPONSE))
        {
            Some(Self::GraphqlResponse)
        } else if types.iter().any(|t| {
            t.eq_ignore_ascii_case("application/json")
                || t.eq_ignore_ascii_case("application/*")
                || *t == "*/*"
        }) {
            Some(Self::Json)
        } else {
            None
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::GraphqlResponse => GRAPHQL_RESPONSE,
            Self::Json => "application/json",
        }
    }
}

/// A request that could not be turned into a GraphQL request.
struct Rejection {
    status: StatusCode,
    message: String,
    field: &'static str,
}

impl Rejection {
    fn new(status: StatusCode, field: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            field,
        }
    }

    fn into_response(self, mode: Mode) -> Response {
        let body = serde_json::json!({
            "errors": [{
                "message": self.message,
                "extensions": { "code": code::BAD_USER_INPUT, "field": self.field },
            }]
        });
        (
            self.status,
            [(header::CONTENT_TYPE, mode.content_type())],
            body.to_string(),
        )
            .into_response()
    }
}

async fn graphql(
    State(http): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    headers: HeaderMap,
    request: Request,
) -> Response {
    let Some(mode) = Mode::negotiate(&headers) else {
        return (
            StatusCode::NOT_ACCEPTABLE,
            format!("accept {GRAPHQL_RESPONSE} or application/json"),
        )
            .into_response();
    };
    let mut gql = match read_request(&http.app, &method, &headers, request).await {
        Ok(gql) if gql.query.trim().is_empty() => {
            return Rejection::new(StatusCode::BAD_REQUEST, "query", "the request has no query")
                .into_response(mode);
        }
        Ok(gql) => gql,
        Err(rejection) => return rejection.into_response(mode),
    };
    http.documents.prepare(&mut gql);
    if method == Method::GET && is_mutation(&mut gql) {
        let mut response = Rejection::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "query",
            "GET only runs queries; send mutations with POST",
        )
        .into_response(mode);
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let viewer = Viewer::from_credentials(
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
        &http.app.tokens,
    );
    let client = client_addr(&headers, peer, http.app.config.trust_proxy_headers);
    let response = http
        .schema
        .execute(gql.data(viewer).data(ClientAddr(client)))
        .await;
    finish(response, mode)
}

/// Reads a GET query string, a JSON body or a multipart upload into a GraphQL request.
async fn read_request(
    app: &AppState,
    method: &Method,
    headers: &HeaderMap,
    request: Request,
) -> Result<async_graphql::Request, Rejection> {
    let config = &app.config;
    if *method == Method::GET {
        let query = request.uri().query().unwrap_or("");
        return async_graphql::http::parse_query_string(query).map_err(|err| {
            Rejection::new(
                StatusCode::BAD_REQUEST,
                "query",
                format!("bad request: {err}"),
            )
        });
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let multipart = essence == "multipart/form-data";
    if !multipart && essence != "application/json" {
        return Err(Rejection::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "body",
            "send application/json or multipart/form-data",
        ));
    }
    let limit = if multipart {
        config
            .max_upload_bytes
            .saturating_add(config.max_body_bytes)
    } else {
        config.max_body_bytes
    };
    let bytes = axum::body::to_bytes(request.into_body(), limit)
        .await
        .map_err(|_| {
            Rejection::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body",
                format!("the request body is larger than {limit} bytes"),
            )
        })?;
    if multipart {
        let options = MultipartOptions::default()
            .max_file_size(config.max_upload_bytes)
            .max_num_files(4);
        async_graphql::http::receive_body(Some(content_type), &bytes[..], options)
            .await
            .map_err(|err| {
                let status = match err {
                    async_graphql::ParseRequestError::PayloadTooLarge => {
                        StatusCode::PAYLOAD_TOO_LARGE
                    }
                    _ => StatusCode::BAD_REQUEST,
                };
                Rejection::new(status, "body", format!("bad upload: {err}"))
            })
    } else {
        serde_json::from_slice::<async_graphql::Request>(&bytes).map_err(|err| {
            Rejection::new(
                StatusCode::BAD_REQUEST,
                "body",
                format!("the body is not a GraphQL request: {err}"),
            )
        })
    }
}

/// Whether the operation the request would run is a mutation (or a subscription).
fn is_mutation(request: &mut async_graphql::Request) -> bool {
    let wanted = request.operation_name.clone();
    let wanted = wanted.as_deref();
    let Ok(document) = request.parsed_query() else {
        return false;
    };
    document.operations.iter().any(|(name, operation)| {
        let selected = match (wanted, name) {
            (None, _) => true,
            (Some(wanted), Some(name)) => wanted == name.as_str(),
            (Some(_), None) => false,
        };
        selected && operation.node.ty != OperationType::Query
    })
}

/// The client's address: the peer, or the last `X-Forwarded-For` hop when a trusted proxy sets it.
fn client_addr(headers: &HeaderMap, peer: SocketAddr, trust_proxy: bool) -> IpAddr {
    if trust_proxy {
        let forwarded = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|hop| hop.trim().parse().ok());
        if let Some(address) = forwarded {
            return address;
        }
    }
    peer.ip()
}

/// Gives every error a contract code and picks the status for the response mode.
fn finish(mut response: async_graphql::Response, mode: Mode) -> Response {
    for error in &mut response.errors {
        ensure_code(error);
    }
    let request_error = response.data == Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| e.path.is_empty());
    let status = if request_error && mode == Mode::GraphqlResponse {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let body = if request_error {
        // A request that never executed has no `data` entry at all (GraphQL over HTTP).
        serde_json::to_vec(&serde_json::json!({ "errors": response.errors }))
    } else {
        serde_json::to_vec(&response)
    };
    match body {
        Ok(body) => (status, [(header::CONTENT_TYPE, mode.content_type())], body).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "cannot serialize a GraphQL response");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Errors raised by the engine itself (syntax, validation, limits, argument coercion) carry no code:
/// they are all about the client's input, so they become BAD_USER_INPUT, naming the argument when
/// the message does.
fn ensure_code(error: &mut ServerError) {
    let extensions = error.extensions.get_or_insert_with(Default::default);
    if extensions.get("code").is_some() {
        return;
    }
    extensions.set("code", code::BAD_USER_INPUT);
    if let Some(argument) = quoted_after(&error.message, "argument \"") {
        extensions.set("field", argument);
    } else if let Some(variable) = quoted_after(&error.message, "variable \"") {
        extensions.set("field", variable.trim_start_matches('$'));
    }
}

fn quoted_after<'a>(message: &'a str, marker: &str) -> Option<&'a str> {
    let start = message.find(marker)? + marker.len();
    let rest = &message[start..];
    rest.find('"').map(|end| &rest[..end])
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

async fn graphiql() -> Html<&'static str> {
    Html(include_str!("../assets/graphiql/index.html"))
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
    match http.app.db.ping().await {
        Ok(()) => {
            Json(serde_json::json!({ "status": "ready", "database": "ok", "broker": broker }))
                .into_response()
        }
        Err(err) => {
            tracing::warn!(error = %err, "database not reachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({ "status": "unavailable", "database": "unreachable", "broker": broker })),
            )
                .into_response()
        }
    }
}

async fn render_metrics() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        prometheus().render(),
    )
        .into_response()
}

async fn media(
    State(http): State<HttpState>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Response {
    let etag = format!("\"{key}\"");
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag))
    {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    match http.app.media.get(&key).await {
        Ok(Some((bytes, content_type))) => (
            [
                (header::CONTENT_TYPE, content_type.to_owned()),
                (
                    header::CACHE_CONTROL,
                    "public, max-age=31536000, immutable".to_owned(),
                ),
                (header::ETAG, etag),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
            ],
            Body::from(bytes),
        )
            .into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, "no such media").into_response(),
        Err(err) => {
            err.report();
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// A blur round's photo at a level (`/media/rounds/{round}/{level}.jpg`), rendered server-side.
async fn round_photo(
    State(http): State<HttpState>,
    Path((round, file)): Path<(String, String)>,
) -> Response {
    let parsed = uuid::Uuid::parse_str(&round).ok().zip(
        file.strip_suffix(".jpg")
            .and_then(|level| level.parse::<i32>().ok()),
    );
    let Some((round, level)) = parsed else {
        return (StatusCode::NOT_FOUND, "no such media").into_response();
    };
    match crate::games::service::blurred_photo(&http.app, round, level).await {
        Ok(Some(bytes)) => (
            [
                (header::CONTENT_TYPE, "image/jpeg"),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            Body::from(bytes),
        )
            .into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, "no such media").into_response(),
        Err(err) => {
            err.report();
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_headers_pick_the_media_type() {
        let mut headers = HeaderMap::new();
        assert!(Mode::negotiate(&headers) == Some(Mode::Json));
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/graphql-response+json, application/json;q=0.9"),
        );
        assert!(Mode::negotiate(&headers) == Some(Mode::GraphqlResponse));
        headers.insert(header::ACCEPT, HeaderValue::from_static("text/html"));
        assert!(Mode::negotiate(&headers).is_none());
    }

    #[test]
    fn engine_errors_get_a_code_and_field() {
        let mut error = ServerError::new(
            r#"Invalid value for argument "first", expected type "Int""#,
            None,
        );
        ensure_code(&mut error);
        let ext = error.extensions.unwrap();
        assert_eq!(ext.get("code"), Some(&Value::from("BAD_USER_INPUT")));
        assert_eq!(ext.get("field"), Some(&Value::from("first")));
    }

    #[test]
    fn only_trusted_proxies_name_the_client() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 10.0.0.9"),
        );
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(client_addr(&headers, peer, false).to_string(), "127.0.0.1");
        assert_eq!(client_addr(&headers, peer, true).to_string(), "10.0.0.9");
    }
}
