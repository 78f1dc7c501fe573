//! What every GraphQL response carries, whatever the transport: a contract code on every error.

use async_graphql::{Response, ServerError, Value};

use crate::error::code;

/// Gives every error of `response` a contract code.
///
/// Errors raised by the engine itself (syntax, validation, limits, argument coercion) carry no
/// code: they are all about the client's input, so they become BAD_USER_INPUT, naming the argument
/// when the message does. Errors from resolvers already carry theirs.
pub fn with_codes(mut response: Response) -> Response {
    for error in &mut response.errors {
        ensure_code(error);
    }
    response
}

/// Whether `response` is a request error: the document never executed (it did not parse or
/// validate, or passed a limit), so there is no data and no error has a path.
pub fn is_request_error(response: &Response) -> bool {
    response.data == Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| e.path.is_empty())
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_get_a_code_and_field() {
        let response = with_codes(Response::from_errors(vec![ServerError::new(
            r#"Invalid value for argument "first", expected type "Int""#,
            None,
        )]));
        let ext = response.errors[0].extensions.clone().unwrap_or_default();
        assert_eq!(ext.get("code"), Some(&Value::from("BAD_USER_INPUT")));
        assert_eq!(ext.get("field"), Some(&Value::from("first")));
        assert!(is_request_error(&response));
    }
}
