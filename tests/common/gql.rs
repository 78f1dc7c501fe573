//! Typed GraphQL-over-HTTP helpers: send a document, read data and errors, sign people up.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::TestApp;

/// One GraphQL response, with its HTTP status.
#[derive(Debug)]
pub struct Gql {
    /// HTTP status.
    pub status: StatusCode,
    /// The whole JSON body.
    pub body: Value,
}

impl Gql {
    /// `data`, asserting there were no errors.
    #[track_caller]
    pub fn data(&self) -> &Value {
        assert!(
            self.body.get("errors").is_none(),
            "unexpected errors: {}",
            self.body
        );
        &self.body["data"]
    }

    /// The first error's `extensions.code`, asserting there is one.
    #[track_caller]
    pub fn code(&self) -> &str {
        self.body["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("expected an error with a code, got {}", self.body))
    }

    /// The first error's `extensions.field`.
    pub fn field(&self) -> Option<&str> {
        self.body["errors"][0]["extensions"]["field"].as_str()
    }

    /// The first error's message.
    pub fn message(&self) -> &str {
        self.body["errors"][0]["message"].as_str().unwrap_or("")
    }

    /// Asserts the first error has `code` (and, when given, names `field`).
    #[track_caller]
    pub fn assert_error(&self, code: &str, field: Option<&str>) {
        assert_eq!(self.code(), code, "body: {}", self.body);
        if let Some(field) = field {
            assert_eq!(self.field(), Some(field), "body: {}", self.body);
        }
    }
}

/// A signed-up user as the tests see them.
#[derive(Clone, Debug)]
pub struct Session {
    /// Their id.
    pub id: String,
    /// Their handle.
    pub handle: String,
    /// A valid access token.
    pub access: String,
    /// Their current refresh token.
    pub refresh: String,
}

/// The fields of `AuthPayload` the helpers read.
pub const AUTH_FIELDS: &str =
    "accessToken accessTokenExpiresAt refreshToken user { id handle role }";

impl TestApp {
    /// POSTs `query` with `variables`, as `token` when given.
    pub async fn gql_with(&self, token: Option<&str>, query: &str, variables: Value) -> Gql {
        let mut request = self
            .http
            .post(self.url("/graphql"))
            .header("accept", "application/graphql-response+json")
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let body = response.json().await.expect("JSON body");
        assert_no_omitted_field(query, &body);
        Gql { status, body }
    }

    /// POSTs an anonymous `query`.
    pub async fn gql(&self, query: &str, variables: Value) -> Gql {
        self.gql_with(None, query, variables).await
    }

    /// POSTs `query` as `session`.
    pub async fn gql_as(&self, session: &Session, query: &str, variables: Value) -> Gql {
        self.gql_with(Some(&session.access), query, variables).await
    }

    /// Signs up `handle` (email `<handle>@example.com`, password `password-<handle>`).
    pub async fn signup(&self, handle: &str) -> Session {
        let response = self
            .gql(
                &format!(
                    "mutation($input: SignupInput!) {{ signup(input: $input) {{ {AUTH_FIELDS} }} }}"
                ),
                json!({ "input": {
                    "handle": handle,
                    "email": format!("{handle}@example.com"),
                    "password": format!("password-{handle}"),
                }}),
            )
            .await;
        session_from(&response.data()["signup"])
    }

    /// Logs in with `login` and `password`.
    pub async fn login(&self, login: &str, password: &str) -> Gql {
        self.gql(
            &format!("mutation($login: String!, $password: String!) {{ login(login: $login, password: $password) {{ {AUTH_FIELDS} }} }}"),
            json!({ "login": login, "password": password }),
        )
        .await
    }

    /// Exchanges `refresh` for a new session.
    pub async fn refresh(&self, refresh: &str) -> Gql {
        self.gql(
            &format!(
                "mutation($t: String!) {{ refreshSession(refreshToken: $t) {{ {AUTH_FIELDS} }} }}"
            ),
            json!({ "t": refresh }),
        )
        .await
    }
}

/// Asserts `body` has every field `query` asked for: a field that failed is `null` (or made its
/// nearest nullable parent `null`), never a missing key, as the GraphQL spec says and Apollo
/// Client's cache relies on. Every response the HTTP helpers receive is checked. Fields under
/// directives (`@skip`, `@include`) and in fragments with a type condition may be absent.
#[track_caller]
pub fn assert_no_omitted_field(query: &str, body: &Value) {
    use async_graphql::parser::types::{DocumentOperations, Selection, SelectionSet};

    fn walk(set: &SelectionSet, value: &Value, path: &str, body: &Value) {
        let object = match value {
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    walk(set, item, &format!("{path}.{index}"), body);
                }
                return;
            }
            Value::Object(object) => object,
            _ => return, // null (a failure absorbed here), or a leaf
        };
        for selection in &set.items {
            match &selection.node {
                Selection::Field(field) if field.node.directives.is_empty() => {
                    let key = field.node.response_key().node.as_str();
                    let Some(child) = object.get(key) else {
                        panic!("{path}.{key} was asked for but is missing: {body}");
                    };
                    walk(
                        &field.node.selection_set.node,
                        child,
                        &format!("{path}.{key}"),
                        body,
                    );
                }
                Selection::InlineFragment(fragment)
                    if fragment.node.type_condition.is_none()
                        && fragment.node.directives.is_empty() =>
                {
                    walk(&fragment.node.selection_set.node, value, path, body);
                }
                _ => {}
            }
        }
    }

    let Ok(document) = async_graphql::parser::parse_query(query) else {
        return; // a document that does not parse gets no data
    };
    let DocumentOperations::Single(operation) = &document.operations else {
        return;
    };
    if let Some(data) = body.get("data") {
        walk(&operation.node.selection_set.node, data, "data", body);
    }
}

/// A [`Session`] from an `AuthPayload` JSON object.
#[track_caller]
pub fn session_from(payload: &Value) -> Session {
    Session {
        id: payload["user"]["id"].as_str().expect("user.id").to_owned(),
        handle: payload["user"]["handle"]
            .as_str()
            .expect("user.handle")
            .to_owned(),
        access: payload["accessToken"]
            .as_str()
            .expect("accessToken")
            .to_owned(),
        refresh: payload["refreshToken"]
            .as_str()
            .expect("refreshToken")
            .to_owned(),
    }
}
