//! The AWS KMS JSON 1.1 protocol: one SigV4-signed POST per call over a kept-alive HTTP/1
//! connection, with retries for what is retryable.
//!
//! [`KmsClient::call`] is the generic form (any operation, JSON in and out) for tools and tests;
//! cloister's own callers use the typed operations in [`crate::ops`], which parse answers
//! straight from the response bytes so that plaintext never passes through a JSON `Value`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cloister_sigv4::Credentials;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::sync::Mutex;
use zeroize::Zeroizing;

use crate::connector::{Connector, TcpConnector, TlsConnector};
use crate::error::ClientError;
use crate::retry::Retry;

/// The AWS JSON 1.1 services the client speaks: each has its `X-Amz-Target` prefix and its SigV4
/// signing name. cloister-kms serves all three on one listener; against AWS each has its own
/// endpoint (a client per endpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// AWS KMS (`TrentService.`, signed as `kms`).
    Kms,
    /// AWS Secrets Manager (`secretsmanager.`, signed as `secretsmanager`).
    SecretsManager,
    /// SSM Parameter Store (`AmazonSSM.`, signed as `ssm`).
    Ssm,
}

impl Api {
    /// The `X-Amz-Target` prefix (before the dot).
    pub fn target_prefix(self) -> &'static str {
        match self {
            Self::Kms => "TrentService",
            Self::SecretsManager => "secretsmanager",
            Self::Ssm => "AmazonSSM",
        }
    }

    /// The SigV4 signing name (the scope's service).
    pub fn signing_name(self) -> &'static str {
        match self {
            Self::Kms => "kms",
            Self::SecretsManager => "secretsmanager",
            Self::Ssm => "ssm",
        }
    }
}

/// A KMS client (and, with [`Api`], a Secrets Manager and Parameter Store client).
pub struct KmsClient {
    connector: Box<dyn Connector>,
    host: String,
    region: String,
    creds: Credentials,
    retry: Retry,
    conn: Mutex<Option<SendRequest<Full<Bytes>>>>,
    /// The day's SigV4 signing key, derived once rather than per request.
    signing_keys: cloister_sigv4::SigningKeyCache,
}

impl std::fmt::Debug for KmsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsClient")
            .field("host", &self.host)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// Standard base64 of `bytes`.
pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decodes a base64 blob field of a JSON answer.
pub fn blob(v: &Value, field: &str) -> Result<Vec<u8>, ClientError> {
    let s = v
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| ClientError::Protocol(format!("answer lacks {field}")))?;
    STANDARD
        .decode(s)
        .map_err(|_| ClientError::Protocol(format!("{field} is not base64")))
}

impl KmsClient {
    /// A client that reaches `host` (the Host header, e.g. `127.0.0.1:4599`) through `connector`.
    pub fn new(
        connector: impl Connector,
        host: impl Into<String>,
        region: impl Into<String>,
        creds: Credentials,
    ) -> Self {
        Self {
            connector: Box::new(connector),
            host: host.into(),
            region: region.into(),
            creds,
            retry: Retry::default(),
            conn: Mutex::new(None),
            signing_keys: cloister_sigv4::SigningKeyCache::new(2),
        }
    }

    /// Plain HTTP to `http://host:port`.
    pub fn http(endpoint: &str, region: &str, creds: Credentials) -> Result<Self, ClientError> {
        let host = endpoint
            .strip_prefix("http://")
            .ok_or_else(|| {
                ClientError::Config(format!(
                    "{endpoint}: only http:// endpoints are reached over plain TCP"
                ))
            })?
            .trim_end_matches('/');
        Ok(Self::new(
            TcpConnector(host.to_owned()),
            host,
            region,
            creds,
        ))
    }

    /// `http://host:port`, or `https://host:port` trusting only the CA certificates in `ca_pem`
    /// (required for https: the KMS's CA is private, so no system roots are consulted).
    pub fn endpoint(
        endpoint: &str,
        ca_pem: Option<&[u8]>,
        region: &str,
        creds: Credentials,
    ) -> Result<Self, ClientError> {
        let Some(rest) = endpoint.strip_prefix("https://") else {
            if ca_pem.is_some() {
                return Err(ClientError::Config(format!(
                    "{endpoint}: a CA is given but the endpoint is not https://"
                )));
            }
            return Self::http(endpoint, region, creds);
        };
        let host = rest.trim_end_matches('/');
        let ca_pem = ca_pem.ok_or_else(|| {
            ClientError::Config(format!(
                "{endpoint}: an https:// endpoint needs the KMS's CA certificate (--kms-ca)"
            ))
        })?;
        let server_name = match host.rsplit_once(':') {
            Some((name, port)) if port.parse::<u16>().is_ok() => name,
            _ => host,
        };
        let server_name = server_name.trim_start_matches('[').trim_end_matches(']');
        let tls = TlsConnector::new(TcpConnector(host.to_owned()), server_name, ca_pem)?;
        Ok(Self::new(tls, host, region, creds))
    }

    /// Changes the retry settings.
    #[must_use]
    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// Calls `TrentService.<op>` with `input`, retrying what is retryable.
    pub async fn call(&self, op: &str, input: &Value) -> Result<Value, ClientError> {
        self.call_api(Api::Kms, op, input).await
    }

    /// Calls `<api's prefix>.<op>` with `input`, signed for `api`, retrying what is retryable.
    pub async fn call_api(&self, api: Api, op: &str, input: &Value) -> Result<Value, ClientError> {
        let body = serde_json::to_vec(input).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let answer = self.request_api(api, op, &body).await?;
        if answer.is_empty() {
            return Ok(Value::Object(serde_json::Map::new()));
        }
        serde_json::from_slice(&answer)
            .map_err(|e| ClientError::Protocol(format!("answer is not JSON: {e}")))
    }

    /// Sends `body` (JSON) as `TrentService.<op>`, retrying what is retryable; returns the
    /// successful answer's bytes, zeroized when dropped (they may carry plaintext).
    pub(crate) async fn request(
        &self,
        op: &str,
        body: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, ClientError> {
        self.request_api(Api::Kms, op, body).await
    }

    /// Sends `body` (JSON) as `<api's prefix>.<op>`, as [`Self::request`] does for KMS.
    pub(crate) async fn request_api(
        &self,
        api: Api,
        op: &str,
        body: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, ClientError> {
        let mut attempt = 0;
        loop {
            match self.once(api, op, body).await {
                Err(e) if e.retryable() && attempt + 1 < self.retry.attempts.max(1) => {
                    tokio::time::sleep(self.retry.delay(attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, ClientError> {
        let stream = self
            .connector
            .connect()
            .await
            .map_err(ClientError::transport("connecting"))?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(ClientError::transport("HTTP handshake"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    async fn once(
        &self,
        api: Api,
        op: &str,
        body: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, ClientError> {
        let target = format!("{}.{op}", api.target_prefix());
        let request = cloister_sigv4::JsonRequest {
            host: &self.host,
            target: &target,
            body,
            region: &self.region,
            service: api.signing_name(),
        };
        let headers = cloister_sigv4::sign_json_request(
            &request,
            &self.creds,
            time::OffsetDateTime::now_utc(),
            Some(&self.signing_keys),
        );
        let mut req = hyper::Request::post("/");
        for (n, v) in &headers {
            req = req.header(n, v);
        }
        let req = req
            .body(Full::new(Bytes::copy_from_slice(body)))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        // One HTTP/1 connection carries one request at a time: hold it for this exchange.
        let mut slot = self.conn.lock().await;
        let mut sender = match slot.take().filter(|s| !s.is_closed()) {
            Some(s) => s,
            None => self.connect().await?,
        };
        sender
            .ready()
            .await
            .map_err(ClientError::transport("waiting for the connection"))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(ClientError::transport("sending the request"))?;
        let status = resp.status().as_u16();
        let bytes = Zeroizing::new(
            resp.into_body()
                .collect()
                .await
                .map_err(ClientError::transport("reading the answer"))?
                .to_bytes()
                .to_vec(),
        );
        *slot = Some(sender);
        drop(slot);
        if status == 200 {
            return Ok(bytes);
        }
        Err(service_error(status, &bytes))
    }
}

/// The error an answer with a non-200 status carries (`__type`, `message`).
pub(crate) fn service_error(status: u16, body: &[u8]) -> ClientError {
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) if body.is_empty() => Value::Null,
        Err(e) => return ClientError::Protocol(format!("error answer is not JSON: {e}")),
    };
    let name = value
        .get("__type")
        .and_then(Value::as_str)
        .unwrap_or("UnknownError");
    let name = name
        .rsplit('#')
        .next()
        .unwrap_or(name)
        .split(':')
        .next()
        .unwrap_or(name)
        .to_owned();
    let message = value
        .get("message")
        .or_else(|| value.get("Message"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    ClientError::Service {
        name,
        message,
        status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_errors_take_aws_names_in_every_spelling() {
        for (body, name) in [
            (
                &br#"{"__type":"com.amazonaws.kms#NotFoundException","message":"m"}"#[..],
                "NotFoundException",
            ),
            (
                br#"{"__type":"ThrottlingException:http://x","Message":"m"}"#,
                "ThrottlingException",
            ),
            (b"", "UnknownError"),
        ] {
            let e = service_error(400, body);
            assert_eq!(e.aws_name(), Some(name));
        }
        assert!(matches!(
            service_error(502, b"<html>bad gateway</html>"),
            ClientError::Protocol(_)
        ));
    }

    /// A KMS on loopback speaking plain HTTP/1.1 (kept alive, like the real one): each request
    /// gets the next of `answers` (status, JSON body), the last one repeated once they run out.
    /// Returns its endpoint and the `X-Amz-Target` of every request it served.
    async fn scripted_kms(
        answers: Vec<(u16, &'static str)>,
    ) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (answers, log) = (answers.clone(), log.clone());
                tokio::spawn(async move {
                    let mut s = BufReader::new(stream);
                    loop {
                        let (mut length, mut target) = (0usize, String::new());
                        let mut line = String::new();
                        if s.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        assert!(line.starts_with("POST / HTTP/1.1"), "{line:?}");
                        loop {
                            line.clear();
                            s.read_line(&mut line).await.unwrap();
                            let header = line.trim_end();
                            if header.is_empty() {
                                break;
                            }
                            let (name, value) = header.split_once(':').unwrap();
                            match name.to_ascii_lowercase().as_str() {
                                "content-length" => length = value.trim().parse().unwrap(),
                                "x-amz-target" => target = value.trim().to_owned(),
                                _ => {}
                            }
                        }
                        let mut body = vec![0; length];
                        s.read_exact(&mut body).await.unwrap();
                        let n = {
                            let mut log = log.lock().unwrap();
                            log.push(target);
                            log.len()
                        };
                        let (status, json) = answers[(n - 1).min(answers.len() - 1)];
                        let answer = format!(
                            "HTTP/1.1 {status} X\r\nContent-Type: application/x-amz-json-1.1\r\n\
                             Content-Length: {}\r\n\r\n{json}",
                            json.len()
                        );
                        if s.get_mut().write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (endpoint, seen)
    }

    fn client_of(endpoint: &str, attempts: u32) -> KmsClient {
        let creds = Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Zeroizing::new("wJalrXUtnFEMI/K7MDENG".into()),
            session_token: None,
        };
        KmsClient::http(endpoint, "us-east-1", creds)
            .unwrap()
            .with_retry(Retry {
                attempts,
                base: std::time::Duration::from_millis(5),
                cap: std::time::Duration::from_millis(50),
            })
    }

    const THROTTLED: (u16, &str) = (
        400,
        r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#,
    );

    #[tokio::test]
    async fn throttling_is_retried_until_the_kms_answers() {
        let ok = (200, r#"{"Keys":[],"Truncated":false}"#);
        let (endpoint, seen) = scripted_kms(vec![THROTTLED, THROTTLED, THROTTLED, ok]).await;
        let answer = client_of(&endpoint, 5)
            .call("ListKeys", &serde_json::json!({}))
            .await
            .unwrap();
        assert_eq!(answer["Truncated"], false);
        assert_eq!(*seen.lock().unwrap(), vec!["TrentService.ListKeys"; 4]);
    }

    #[tokio::test]
    async fn throttling_that_lasts_fails_with_the_aws_code_after_every_attempt() {
        use cloister_common::ErrorCode;
        let (endpoint, seen) = scripted_kms(vec![THROTTLED]).await;
        let e = client_of(&endpoint, 4)
            .call("ListKeys", &serde_json::json!({}))
            .await
            .unwrap_err();
        assert_eq!(e.aws_name(), Some("ThrottlingException"), "{e}");
        assert_eq!(e.code(), "KMS-ThrottlingException");
        assert!(e.to_string().contains("Rate exceeded"), "{e}");
        assert_eq!(seen.lock().unwrap().len(), 4, "one request per attempt");
    }

    #[tokio::test]
    async fn server_errors_are_retried_and_refusals_are_not() {
        let internal = (500, r#"{"__type":"KMSInternalException","message":"oops"}"#);
        let (endpoint, seen) = scripted_kms(vec![internal, (200, "{}")]).await;
        client_of(&endpoint, 3)
            .call("ListKeys", &serde_json::json!({}))
            .await
            .unwrap();
        assert_eq!(seen.lock().unwrap().len(), 2);

        let denied = (400, r#"{"__type":"AccessDeniedException","message":"no"}"#);
        let (endpoint, seen) = scripted_kms(vec![denied, (200, "{}")]).await;
        let e = client_of(&endpoint, 5)
            .call("Decrypt", &serde_json::json!({}))
            .await
            .unwrap_err();
        assert_eq!(e.aws_name(), Some("AccessDeniedException"));
        assert_eq!(*seen.lock().unwrap(), vec!["TrentService.Decrypt"]);
    }
}
