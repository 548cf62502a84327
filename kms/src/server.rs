//! The HTTP front: AWS JSON 1.1 over `POST /`, authenticated with SigV4, every request audited.
//!
//! SigV4 is strict (see `cloister_sigv4::verify`): `host`, `x-amz-date`, `content-type` and every
//! `x-amz-*` header a request carries must be signed, so a captured request cannot be replayed as
//! another operation, and signing keys are derived once per principal per day (`App::signing_keys`).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Value, json};

use crate::app::App;
use crate::audit::AuditEntry;
use crate::error::{KmsError, Result};
use crate::input::Body;
use crate::ops;
use crate::state::Principal;
use crate::store::now_ms;

/// Largest request body accepted.
const MAX_BODY: usize = 512 * 1024;

/// The router serving the KMS API.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", any(handle))
        .fallback(any(handle))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(app)
}

/// Verifies the request's SigV4 signature against the principal it names (whose signing key
/// comes from the app's cache). Header values that are not visible ASCII are kept (lossily), never
/// dropped, so a header cannot hide from the signed-headers check by being unreadable.
fn authenticate(
    app: &App,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Principal> {
    let auth_header = headers
        .get(header::AUTHORIZATION)
        .ok_or(cloister_sigv4::SigV4Error::Missing)?;
    let auth_header = auth_header
        .to_str()
        .map_err(|_| cloister_sigv4::SigV4Error::Malformed("not ASCII".into()))?;
    let auth = cloister_sigv4::parse_authorization(auth_header)?;
    let principal = app
        .principal(&auth.access_key_id)?
        .ok_or(KmsError::UnrecognizedClient)?;
    let values: Vec<(&str, std::borrow::Cow<'_, str>)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), String::from_utf8_lossy(v.as_bytes())))
        .collect();
    let pairs: Vec<(&str, &str)> = values.iter().map(|(n, v)| (*n, v.as_ref())).collect();
    let parts = cloister_sigv4::RequestParts {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query().unwrap_or(""),
        headers: &pairs,
        body,
    };
    cloister_sigv4::verify_cached(
        &parts,
        &auth,
        &principal.secret,
        &app.cfg.region,
        "kms",
        time::OffsetDateTime::now_utc(),
        &app.signing_keys,
    )?;
    Ok(principal)
}

async fn handle(
    State(app): State<Arc<App>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let op = target
        .strip_prefix("TrentService.")
        .unwrap_or("")
        .to_owned();
    let mut entry = AuditEntry {
        time_ms: now_ms(),
        principal: "anonymous".into(),
        operation: if op.is_empty() {
            target.clone()
        } else {
            op.clone()
        },
        ..AuditEntry::default()
    };
    let result = serve(&app, &method, &uri, &headers, &body, &op, &mut entry).await;
    match &result {
        Ok(_) => entry.outcome = "ok".into(),
        Err(e) => {
            entry.outcome = "error".into();
            entry.error = Some(e.aws_name().into());
            entry.reason = Some(e.to_string());
        }
    }
    let status_line = match &result {
        Ok(_) => "ok".to_owned(),
        Err(e) => e.aws_name().to_owned(),
    };
    tracing::info!(request_id, principal = %entry.principal, op = %entry.operation, key = ?entry.key_id, outcome = %status_line, "request");
    // The answer waits until its audit entry is durable.
    let result = match app.writer.append_audit(entry).await {
        Ok(()) => result,
        Err(e) => Err(e),
    };
    respond(result, &request_id)
}

async fn serve(
    app: &App,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    op: &str,
    entry: &mut AuditEntry,
) -> Result<Value> {
    let principal = authenticate(app, method, uri, headers, body)?;
    entry.principal = principal.arn.clone();
    if *method != Method::POST || uri.path() != "/" {
        return Err(KmsError::UnknownOperation(
            "Only POST / is supported".into(),
        ));
    }
    if op.is_empty() {
        return Err(KmsError::UnknownOperation(
            "Missing or unknown X-Amz-Target".into(),
        ));
    }
    let body = Body::parse(body)?;
    if ops::is_cryptographic(op) {
        app.throttle()?;
    }
    ops::dispatch(op, app, &principal, body, entry).await
}

fn respond(result: Result<Value>, request_id: &str) -> Response {
    let (status, body, error_type) = match result {
        Ok(v) => (axum::http::StatusCode::OK, v, None),
        Err(e) => (
            e.status(),
            json!({"__type": e.aws_name(), "message": e.to_string()}),
            Some(e.aws_name()),
        ),
    };
    let mut resp = (status, body.to_string()).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
    if let Some(t) = error_type {
        h.insert("x-amzn-errortype", HeaderValue::from_static(t));
    }
    resp
}
