//! GraphQL over HTTP, following the GraphQL-over-HTTP spec: `POST` (JSON or multipart uploads) and
//! `GET` (queries only) on `/graphql`. Responses are `application/graphql-response+json` when the
//! client accepts it (request errors then get 400) and `application/json` otherwise (always 200
//! once the request parsed). Bodies are read with a size limit chosen by content type (JSON or
//! multipart upload), so an oversized request is refused with 413 before it is buffered whole.
//! Apollo's automatic persisted queries are honoured on both methods (see `documents`), so a query
//! can be a short, stable `GET` URL.

use std::net::SocketAddr;
use std::sync::Arc;

use async_graphql::http::MultipartOptions;
use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::Caller;
use super::documents::PersistedQueryError;
use super::execution::{Executor, NotRun};
use super::response::{is_request_error, with_codes};
use crate::auth::{ClientAddr, Viewer};
use crate::error::{Error, code};
use crate::state::AppState;

/// Media type of GraphQL-over-HTTP responses.
const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

/// What the `/graphql` handler shares, behind one `Arc` so each request clones a pointer.
struct GraphqlHttp {
    app: AppState,
    executor: Executor,
}

/// The `/graphql` route (GET and POST).
pub fn routes(app: AppState, executor: Executor) -> Router {
    let shared = Arc::new(GraphqlHttp { app, executor });
    Router::new()
        .route("/graphql", get(graphql).post(graphql))
        .with_state(shared)
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
    extensions: serde_json::Value,
    /// The body was a GraphQL request (legacy `application/json` responses are then 200).
    parsed: bool,
}

/// When a client refused for [`NotRun`] may try again.
const BUSY_RETRY_SECONDS: u64 = 1;

/// The code Apollo's persisted-queries link waits for before it sends the document with its hash.
const PERSISTED_QUERY_NOT_FOUND: &str = "PERSISTED_QUERY_NOT_FOUND";

impl Rejection {
    fn new(status: StatusCode, field: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            extensions: serde_json::json!({ "code": code::BAD_USER_INPUT, "field": field }),
            parsed: false,
        }
    }

    /// A mutation that did not run ([`NotRun`]): too many running (429) or the server stopping
    /// (503, which a load balancer may take to another instance), whatever the response mode, so
    /// the client retries after `Retry-After`.
    fn not_run(why: NotRun) -> Self {
        let (status, message) = match why {
            NotRun::Busy => (
                StatusCode::TOO_MANY_REQUESTS,
                "too many mutations are running; retry in 1 s".to_owned(),
            ),
            NotRun::Stopping => (StatusCode::SERVICE_UNAVAILABLE, Error::stopping().message()),
        };
        Self {
            status,
            message,
            extensions: serde_json::json!({ "code": code::RATE_LIMITED, "retryAfterSeconds": BUSY_RETRY_SECONDS }),
            parsed: false,
        }
    }

    fn persisted(error: PersistedQueryError) -> Self {
        let (message, extensions) = match error {
            // Apollo's protocol names this one by its message and its code.
            PersistedQueryError::NotFound => (
                "PersistedQueryNotFound".to_owned(),
                serde_json::json!({ "code": PERSISTED_QUERY_NOT_FOUND }),
            ),
            PersistedQueryError::Invalid(why) => (
                why.to_owned(),
                serde_json::json!({ "code": code::BAD_USER_INPUT, "field": "extensions.persistedQuery" }),
            ),
        };
        Self {
            status: StatusCode::BAD_REQUEST,
            message,
            extensions,
            parsed: true,
        }
    }

    fn into_response(self, mode: Mode) -> Response {
        let body = serde_json::json!({
            "errors": [{ "message": self.message, "extensions": self.extensions }]
        });
        let status = if self.parsed && mode == Mode::Json {
            StatusCode::OK
        } else {
            self.status
        };
        let mut response = (
            status,
            [(header::CONTENT_TYPE, mode.content_type())],
            body.to_string(),
        )
            .into_response();
        if matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        ) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(BUSY_RETRY_SECONDS));
        }
        response
    }
}

async fn graphql(
    State(http): State<Arc<GraphqlHttp>>,
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
        Ok(gql) => gql,
        Err(rejection) => return rejection.into_response(mode),
    };
    if let Err(error) = http.executor.resolve_persisted(&mut gql) {
        return Rejection::persisted(error).into_response(mode);
    }
    if gql.query.trim().is_empty() {
        return Rejection::new(StatusCode::BAD_REQUEST, "query", "the request has no query")
            .into_response(mode);
    }
    let prepared = http.executor.prepare(gql);
    // HEAD is GET without the body (axum routes both here): neither runs a mutation.
    if matches!(method, Method::GET | Method::HEAD) && prepared.is_mutation() {
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
    let viewer = Viewer::from_header(headers.get(header::AUTHORIZATION), &http.app.tokens);
    let addr = ClientAddr::from_request(&headers, peer, http.app.config.trust_proxy_headers);
    let caller = Caller {
        viewer,
        addr: Some(addr),
    };
    // A mutation goes on when its client leaves or the request times out (see `run_to_end`).
    let response = if prepared.is_mutation() {
        match http.executor.run_to_end(prepared, caller).await {
            Ok(response) => response,
            Err(why) => return Rejection::not_run(why).into_response(mode),
        }
    } else {
        http.executor.execute(prepared, caller).await
    };
    let response = with_codes(response);
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
    if matches!(*method, Method::GET | Method::HEAD) {
        let query = request.uri().query().unwrap_or("");
        if query.len() > config.max_body_bytes {
            return Err(Rejection::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "query",
                format!(
                    "the query string is larger than {} bytes",
                    config.max_body_bytes
                ),
            ));
        }
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
        // The engine bounds each file, not the parts it parses as JSON (`operations`, `map`): they
        // get the JSON body's limit, measured before anything parses them.
        check_form_parts(&content_type, &bytes, config.max_body_bytes).await?;
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

/// Refuses a multipart body whose `operations` or `map` part is larger than `limit` (413, naming
/// the part). Only sizes are judged here: whatever else is wrong with the form, the engine's own
/// reading of it reports.
async fn check_form_parts(
    content_type: &str,
    body: &bytes::Bytes,
    limit: usize,
) -> Result<(), Rejection> {
    let Ok(boundary) = multer::parse_boundary(content_type) else {
        return Ok(());
    };
    let limit = u64::try_from(limit).unwrap_or(u64::MAX);
    let constraints = multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .for_field("operations", limit)
            .for_field("map", limit),
    );
    let whole = futures_util::stream::once(std::future::ready(Ok::<_, std::convert::Infallible>(
        body.clone(),
    )));
    let mut form = multer::Multipart::with_constraints(whole, boundary, constraints);
    let too_large = |part: Option<String>| {
        Rejection::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body",
            format!(
                "the request's {} part is larger than {limit} bytes",
                part.as_deref().unwrap_or("operations")
            ),
        )
    };
    loop {
        let mut field = match form.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => return Ok(()),
            Err(multer::Error::FieldSizeExceeded { field_name, .. }) => {
                return Err(too_large(field_name));
            }
            Err(_) => return Ok(()),
        };
        loop {
            match field.chunk().await {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(multer::Error::FieldSizeExceeded { field_name, .. }) => {
                    return Err(too_large(field_name));
                }
                Err(_) => return Ok(()),
            }
        }
    }
}

/// Picks the status for the response mode, and leaves `data` out of a request error.
fn finish(response: async_graphql::Response, mode: Mode) -> Response {
    let request_error = is_request_error(&response);
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
}
