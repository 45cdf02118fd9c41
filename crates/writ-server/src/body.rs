//! Reading request bodies and queries into typed values, with problem+json errors that name
//! the offending field.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::problem::Problem;

/// The 413 problem for a body over `server.max_body_bytes`.
pub(crate) fn too_large(settings: &crate::ServerSettings) -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body-too-large",
        "Request body too large",
    )
    .detail(format!(
        "the body exceeds the limit of {} bytes (server.max_body_bytes)",
        settings.max_body_bytes
    ))
    .field("body", "too large")
}

/// The body, or the problem: 413 over the limit, 408 when it stalls, 400 when unreadable.
#[expect(
    clippy::result_large_err,
    reason = "a Problem is built at most once per request, on its way out"
)]
pub(crate) fn bytes(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<Bytes, Problem> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large(&state.settings)
        } else if crate::limits::is_body_timeout(&rejection) {
            crate::limits::body_timeout(&state.settings)
        } else {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "unreadable-body",
                "Unreadable request body",
            )
            .detail(rejection.body_text())
        }
    })
}

/// The body parsed as a JSON object into `T`; a 400 naming the field otherwise.
#[expect(
    clippy::result_large_err,
    reason = "a Problem is built at most once per request, on its way out"
)]
pub(crate) fn json_body<T: DeserializeOwned>(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, Problem> {
    let body = bytes(state, body)?;
    // Every JSON body of this API is an object; serde would also read a struct from an
    // array of its fields in order, which the document does not allow.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-body",
            "Invalid request body",
        )
        .detail("the body must be a JSON object")
        .field("body", "not a JSON object"));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(&body);
    let invalid = |field: String, message: String| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-body",
            "Invalid request body",
        )
        .detail(format!("{field}: {message}"))
        .field(field, message)
    };
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let message = err.inner().to_string();
        // A missing field is named by itself, not by the object that lacks it.
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split_once('`'))
            .map(|(name, _)| name.to_owned());
        let field = match (path.as_str(), missing) {
            (".", Some(name)) => name,
            (_, Some(name)) => format!("{path}.{name}"),
            (".", None) => "body".to_owned(),
            (_, None) => path,
        };
        invalid(field, message)
    })?;
    deserializer
        .end()
        .map_err(|err| invalid("body".to_owned(), err.to_string()))?;
    Ok(value)
}

/// The problem for a query that does not parse.
pub(crate) fn bad_query(err: &QueryRejection) -> Problem {
    let text = err.body_text();
    Problem::new(StatusCode::BAD_REQUEST, "bad-query", "Bad query")
        .detail(text.clone())
        .field("query", text)
}

/// A JSON number as a whole number, when it is one. JSON Schema counts `3.0` as an integer, so
/// a client (or a fuzzer) may send one where the document says `integer`; serde would refuse it.
pub(crate) fn whole_number(number: &serde_json::Number) -> Option<u64> {
    number.as_u64().or_else(|| {
        number
            .as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64)
            .map(|f| f as u64)
    })
}

/// `deserialize_with` for a required whole number of seconds (`3600` or `3600.0`).
pub(crate) fn whole_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    use serde::Deserialize as _;
    use serde::de::Error as _;
    let number = serde_json::Number::deserialize(d)?;
    whole_number(&number)
        .ok_or_else(|| D::Error::custom(format!("{number} is not a whole number of seconds")))
}
