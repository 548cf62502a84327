//! The HTTP front: AWS JSON 1.1 over `POST /`, authenticated with SigV4, every request audited.
//! `X-Amz-Target` picks the service (KMS, Secrets Manager, Parameter Store; see `service`), and
//! the SigV4 scope must name that service; errors are written in the service's shape.
//!
//! SigV4 is strict (see `cloister_sigv4::verify`): `host`, `x-amz-date`, `content-type` and every
//! `x-amz-*` header a request carries must be signed, so a captured request cannot be replayed as
//! another operation, and signing keys are derived once per principal per day (`App::signing_keys`).
//!
//! Authenticated requests are audited one by one. Unauthenticated ones cost the caller nothing,
//! so what they can make the audit log hold is bounded: what they sent is cut to a few hundred
//! bytes, and beyond a rate they are counted rather than written one by one; the count is
//! audited as one `UnauthenticatedRequests` entry with the next unauthenticated request audited,
//! by the server's timer ([`App::audit_unaudited`]), and when it stops.
//!
//! Operations that answer with plaintext are refused on a cleartext listener that other
//! machines reach (see [`check_transport`]).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Extension, Router};
use serde_json::Value;

use crate::app::App;
use crate::audit::AuditEntry;
use crate::error::{KmsError, Result};
use crate::input::Body;
use crate::listen::Transport;
use crate::ops;
use crate::ops::via::ViaCall;
use crate::ratelimit::Unaudited;
use crate::service::Service;
use crate::state::Principal;
use crate::store::now_ms;

/// Largest request body accepted.
pub(crate) const MAX_BODY: usize = 512 * 1024;

/// The principal of an unauthenticated request's audit entry.
const ANONYMOUS: &str = "anonymous";
/// Most bytes of the operation (the raw `X-Amz-Target` when unknown) an entry keeps.
const MAX_OPERATION: usize = 128;
/// Most bytes of an unauthenticated request's refusal reason an entry keeps.
const MAX_REASON: usize = 256;
/// The operation of the entry that counts unaudited unauthenticated requests.
const UNAUDITED_OPERATION: &str = "UnauthenticatedRequests";

/// The router serving the KMS API to requests that come over `transport`.
pub fn router(app: Arc<App>, transport: Transport) -> Router {
    Router::new()
        .route("/", any(handle))
        .fallback(any(handle))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(Extension(transport))
        .with_state(app)
}

/// KMS operations whose answer carries plaintext or secret material, unless the request names a
/// `Recipient` (the answer is then encrypted to the attested enclave). Any operation added
/// that answers with secrets belongs here (Secrets Manager's and Parameter Store's say so
/// themselves: `returns_plaintext`).
const RETURNS_PLAINTEXT: &[&str] = &[
    "Decrypt",
    "GenerateDataKey",
    "GenerateDataKeyPair",
    "GenerateRandom",
    "DeriveSharedSecret",
];

/// Whether `service`'s operation `op` with `body` would answer with plaintext.
fn returns_plaintext(service: Service, op: &str, body: &Body) -> bool {
    match service {
        Service::Kms => RETURNS_PLAINTEXT.contains(&op) && !body.has("Recipient"),
        Service::SecretsManager => crate::secrets::returns_plaintext(op, body),
        Service::Ssm => crate::ssm::returns_plaintext(op, body),
    }
}

/// Whether an operation encrypts or decrypts with a KMS key (the KMS's cryptographic ones, and
/// the Secrets Manager and Parameter Store ones that use a key): all share the rate limit.
fn uses_kms_keys(service: Service, op: &str) -> bool {
    match service {
        Service::Kms => ops::is_cryptographic(op),
        Service::SecretsManager => matches!(
            op,
            "CreateSecret"
                | "PutSecretValue"
                | "UpdateSecret"
                | "GetSecretValue"
                | "BatchGetSecretValue"
        ),
        Service::Ssm => matches!(
            op,
            "PutParameter"
                | "GetParameter"
                | "GetParameters"
                | "GetParametersByPath"
                | "GetParameterHistory"
        ),
    }
}

/// Refuses an operation that would answer with plaintext over cleartext HTTP that leaves the
/// machine. AWS has no such case; UnsupportedOperationException says the request cannot be
/// served as sent, without suggesting that the key policy is at fault.
fn check_transport(service: Service, op: &str, body: &Body, transport: Transport) -> Result<()> {
    if transport.carries_plaintext() || !returns_plaintext(service, op, body) {
        return Ok(());
    }
    Err(KmsError::Unsupported(format!(
        "{op} answers with plaintext, which this KMS does not send over cleartext HTTP on a \
         non-loopback address: use the HTTPS listener (--tls-listen) or bind --listen to loopback"
    )))
}

/// `text` cut to at most `max` bytes on a character boundary, marked with how much was cut.
fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}...[{} more bytes]",
        text.get(..end).unwrap_or_default(),
        text.len() - end
    )
}

/// The entry counting `u`.
fn unaudited_entry(u: Unaudited) -> AuditEntry {
    let since = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(u.since_ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{} ms after the epoch", u.since_ms));
    AuditEntry {
        time_ms: now_ms(),
        principal: ANONYMOUS.into(),
        operation: UNAUDITED_OPERATION.into(),
        outcome: "error".into(),
        reason: Some(format!(
            "{} unauthenticated requests not individually audited since {since}",
            u.count
        )),
        ..AuditEntry::default()
    }
}

impl App {
    /// Audits the unauthenticated requests counted and not audited one by one, as one
    /// `UnauthenticatedRequests` entry; nothing if there are none. The server calls it every
    /// few seconds and when it stops.
    pub async fn audit_unaudited(&self) -> Result<()> {
        match self.take_unaudited() {
            Some(u) => self.writer.append_audit(unaudited_entry(u)).await,
            None => Ok(()),
        }
    }
}

/// Verifies the request's SigV4 signature for `service` against the principal it names (whose
/// signing key comes from the app's cache), and returns the principal and the region the
/// request was signed for: one this deployment serves, or the signature check's refusal naming
/// the home region (and the service). Header values that are not visible ASCII are kept (lossily), never
/// dropped, so a header cannot hide from the signed-headers check by being unreadable.
fn authenticate(
    app: &App,
    service: Service,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Principal, String)> {
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
    let region = if app.serves(&auth.region) {
        auth.region.clone()
    } else {
        app.cfg.region.clone()
    };
    cloister_sigv4::verify_cached(
        &parts,
        &auth,
        &principal.secret,
        &region,
        service.signing_name(),
        time::OffsetDateTime::now_utc(),
        &app.signing_keys,
    )?;
    Ok((principal, region))
}

async fn handle(
    State(app): State<Arc<App>>,
    Extension(transport): Extension<Transport>,
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
    let named = Service::parse_target(&target);
    // The service answering: the one the target names; for a target naming none, the one the
    // signature's scope names (so its errors come in the shape its SDK reads), else the KMS.
    let service = named
        .map(|(s, _)| s)
        .unwrap_or_else(|| scope_service(&headers));
    let op = named.map(|(_, op)| op.to_owned()).unwrap_or_default();
    let mut entry = AuditEntry {
        time_ms: now_ms(),
        principal: ANONYMOUS.into(),
        operation: bounded(
            &if op.is_empty() {
                target.clone()
            } else {
                service.audit_operation(&op)
            },
            MAX_OPERATION,
        ),
        ..AuditEntry::default()
    };
    let request = Request {
        method: &method,
        uri: &uri,
        headers: &headers,
        body: &body,
        service,
        op: &op,
        transport,
    };
    let result = serve(&app, request, &mut entry).await;
    let anonymous = entry.principal == ANONYMOUS;
    match &result {
        Ok(_) => entry.outcome = "ok".into(),
        Err(e) => {
            entry.outcome = "error".into();
            entry.error = Some(e.aws_name().into());
            let reason = e.to_string();
            entry.reason = Some(if anonymous {
                bounded(&reason, MAX_REASON)
            } else {
                reason
            });
        }
    }
    let status_line = match &result {
        Ok(_) => "ok".to_owned(),
        Err(e) => e.aws_name().to_owned(),
    };
    // Unauthenticated requests beyond the budget are only counted (and logged at debug level,
    // so they do not flood the log either).
    let individually = !anonymous || app.admit_unauthenticated(entry.time_ms);
    if individually {
        tracing::info!(request_id, principal = %entry.principal, op = %entry.operation, key = ?entry.key_id, outcome = %status_line, "request");
    } else {
        tracing::debug!(request_id, principal = %entry.principal, op = %entry.operation, outcome = %status_line, "request, counted");
    }
    // The answer waits until its audit entry is durable; an unauthenticated one's comes after
    // the count of those not audited before it.
    let audited = match (individually, anonymous) {
        (false, _) => Ok(()),
        (true, false) => app.writer.append_audit(entry).await,
        (true, true) => match app.audit_unaudited().await {
            Ok(()) => app.writer.append_audit(entry).await,
            Err(e) => Err(e),
        },
    };
    let result = match audited {
        Ok(()) => result,
        Err(e) => Err(e),
    };
    respond(service, result, &request_id)
}

/// The service an `Authorization` header's credential scope names, if it is one served here,
/// else the KMS (the answer to such a request is an error either way).
fn scope_service(headers: &HeaderMap) -> Service {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| cloister_sigv4::parse_authorization(v).ok())
        .and_then(|a| Service::by_signing_name(&a.service))
        .unwrap_or(Service::Kms)
}

/// What [`serve`] needs of a request.
struct Request<'a> {
    method: &'a Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
    body: &'a [u8],
    /// The service `X-Amz-Target` names (or the scope's, when it names none).
    service: Service,
    /// The operation named by `X-Amz-Target` (empty when it names none).
    op: &'a str,
    transport: Transport,
}

async fn serve(app: &App, request: Request<'_>, entry: &mut AuditEntry) -> Result<Value> {
    let Request {
        method,
        uri,
        headers,
        body,
        service,
        op,
        transport,
    } = request;
    let (principal, region) = authenticate(app, service, method, uri, headers, body)?;
    entry.principal = principal.arn.clone();
    // On a shared store: every change committed before this request arrived, on any node, is
    // in the state it is decided from.
    app.sync().await?;
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
    check_transport(service, op, &body, transport)?;
    // The KMS's cryptographic operations, and the other services' operations that use a KMS
    // key, share one budget.
    if uses_kms_keys(service, op) {
        app.throttle()?;
    }
    if service == Service::Kms {
        return ops::dispatch(op, app, &principal, &region, body, entry).await;
    }
    let call = ViaCall {
        app,
        principal: &principal,
        region: &region,
        service,
        body,
        audit: entry,
    };
    match service {
        Service::SecretsManager => crate::secrets::dispatch(op, call).await,
        _ => crate::ssm::dispatch(op, call).await,
    }
}

fn respond(service: Service, result: Result<Value>, request_id: &str) -> Response {
    let (status, body, error_type) = match result {
        Ok(v) => (axum::http::StatusCode::OK, v, None),
        Err(e) => (e.status(), service.error_body(&e), Some(e.aws_name())),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_text_is_cut_on_a_character_boundary_and_marked() {
        assert_eq!(bounded("Decrypt", 128), "Decrypt");
        let long = format!("a{}", "é".repeat(100));
        let cut = bounded(&long, 4);
        assert_eq!(cut, "aé...[198 more bytes]");
        assert!(bounded(&"x".repeat(60_000), MAX_OPERATION).len() < MAX_OPERATION + 32);
    }

    #[test]
    fn plaintext_answers_need_tls_loopback_or_a_recipient() {
        let plain = Body::parse(b"{}").unwrap();
        let attested = Body::parse(br#"{"Recipient": {"AttestationDocument": "AA=="}}"#).unwrap();
        let public = Transport::PublicCleartext;
        for op in ["Decrypt", "GenerateDataKey", "GenerateRandom"] {
            let err = check_transport(Service::Kms, op, &plain, public).unwrap_err();
            assert_eq!(err.aws_name(), "UnsupportedOperationException");
            assert!(err.to_string().contains("--tls-listen"), "{err}");
            assert!(check_transport(Service::Kms, op, &attested, public).is_ok());
            assert!(check_transport(Service::Kms, op, &plain, Transport::Tls).is_ok());
            assert!(
                check_transport(Service::Kms, op, &plain, Transport::LoopbackCleartext).is_ok()
            );
        }
        for op in [
            "Encrypt",
            "ReEncrypt",
            "GenerateDataKeyWithoutPlaintext",
            "DescribeKey",
        ] {
            assert!(
                check_transport(Service::Kms, op, &plain, public).is_ok(),
                "{op}"
            );
        }
        // Secrets Manager's and Parameter Store's reads of values.
        let sm = Service::SecretsManager;
        assert!(check_transport(sm, "GetSecretValue", &plain, public).is_err());
        assert!(check_transport(sm, "GetSecretValue", &attested, public).is_ok());
        assert!(check_transport(sm, "DescribeSecret", &plain, public).is_ok());
        let decrypted = Body::parse(br#"{"WithDecryption": true}"#).unwrap();
        assert!(check_transport(Service::Ssm, "GetParameter", &decrypted, public).is_err());
        assert!(check_transport(Service::Ssm, "GetParameter", &plain, public).is_ok());
    }

    #[test]
    fn the_unaudited_entry_counts_and_dates() {
        let e = unaudited_entry(Unaudited {
            count: 42,
            since_ms: 1_700_000_000_123,
        });
        assert_eq!(
            (e.principal.as_str(), e.operation.as_str()),
            (ANONYMOUS, UNAUDITED_OPERATION)
        );
        assert_eq!(
            e.reason.as_deref(),
            Some(
                "42 unauthenticated requests not individually audited since 2023-11-14T22:13:20.123Z"
            )
        );
    }
}
