//! For the operations' tests: an [`App`] over a temporary data directory, driven through the
//! router with SigV4-signed requests as a client sends them, without a server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use base64::Engine as _;
use cloister_sigv4::Credentials;
use serde_json::Value;
use tower::ServiceExt as _;

use crate::app::{App, Config};
use crate::audit::AuditEntry;
use crate::store::Store;

/// The account's root: the admin principal.
pub(crate) const ADMIN: &str = "arn:aws:iam::111122223333:root";
const HOST: &str = "kms.test";

/// An enclave as the attested operations' tests need it: a KMS trusting a fresh dev PKI, the
/// enclave's recipient key, its attestation document (PCR0 = measure("image"), base64) and the
/// `Recipient` member naming it.
pub(crate) struct Attested {
    pub(crate) kms: Kms,
    pub(crate) enclave: cloister_attestation::recipient::RecipientPrivateKey,
    pub(crate) doc: String,
    pub(crate) recipient: Value,
}

impl Attested {
    pub(crate) fn new() -> Self {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::rsa::{KeySize, PrivateDecryptingKey};
        use cloister_attestation::dev_signer::{DevPki, DocumentRequest};
        use cloister_attestation::recipient::RecipientPrivateKey;
        use cloister_attestation::{PcrIndex, PcrValue, Pcrs, Timestamp, TrustAnchor};

        let pki = DevPki::generate(Timestamp::now()).unwrap();
        let mut cfg = config();
        cfg.trust_roots = TrustAnchor::all_from_pem(&pki.root_pem()).unwrap();
        let kms = Kms::with(cfg);
        let private = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
        let spki = private.public_key().as_der().unwrap().as_ref().to_vec();
        let enclave = RecipientPrivateKey::new(private).unwrap();
        let mut pcrs = Pcrs::new();
        pcrs.insert(PcrIndex::IMAGE, PcrValue::measure(b"image"));
        let req = DocumentRequest {
            module_id: "i-0123456789abcdef0-enc0000000000000001".into(),
            pcrs,
            public_key: Some(spki),
            user_data: None,
            nonce: None,
        };
        let doc = crate::input::b64(&pki.issue(&req, Timestamp::now()).unwrap());
        let recipient = serde_json::json!(
            {"KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256", "AttestationDocument": doc}
        );
        Self {
            kms,
            enclave,
            doc,
            recipient,
        }
    }
}

/// A KMS in a temporary directory, with the admin's credentials.
pub(crate) struct Kms {
    pub(crate) app: Arc<App>,
    router: axum::Router,
    admin: Credentials,
    dir: tempfile::TempDir,
}

pub(crate) fn config() -> Config {
    Config {
        region: "us-east-1".into(),
        replica_regions: vec!["us-west-2".into(), "eu-west-1".into()],
        account: "111122223333".into(),
        max_attestation_age: Duration::from_secs(300),
        rate: None,
        trust_roots: Vec::new(),
    }
}

impl Kms {
    pub(crate) fn new() -> Self {
        Self::with(config())
    }

    pub(crate) fn with(cfg: Config) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (root, store) = Store::init(dir.path(), &cfg.account).unwrap();
        let admin = store.admin(&root, &cfg.account).unwrap().unwrap();
        let admin = credentials(admin.access_key_id(), admin.secret());
        let app = Arc::new(App::new(cfg, root, store, dir.path()).unwrap());
        Self {
            router: crate::server::router(app.clone(), crate::listen::Transport::Tls),
            app,
            admin,
            dir,
        }
    }

    /// A new principal's credentials.
    pub(crate) fn add_principal(&self, arn: &str) -> Credentials {
        let (root, store) = Store::init(self.dir.path(), "111122223333").unwrap();
        let p = store.add_principal(&root, arn).unwrap();
        credentials(p.access_key_id(), p.secret())
    }

    /// Calls `op` as the admin: (HTTP status, JSON body).
    pub(crate) async fn call(&self, op: &str, input: Value) -> (u16, Value) {
        self.call_as(&self.admin, op, input).await
    }

    /// Calls `op` signed with `creds`.
    pub(crate) async fn call_as(
        &self,
        creds: &Credentials,
        op: &str,
        input: Value,
    ) -> (u16, Value) {
        self.call_signed(creds, "us-east-1", op, input).await
    }

    /// Calls `op` signed with `creds` for `region`.
    pub(crate) async fn call_as_in(
        &self,
        creds: &Credentials,
        region: &str,
        op: &str,
        input: Value,
    ) -> (u16, Value) {
        self.call_signed(creds, region, op, input).await
    }

    /// Calls `op` as the admin, signed for `region`.
    pub(crate) async fn call_in(&self, region: &str, op: &str, input: Value) -> (u16, Value) {
        self.call_signed(&self.admin, region, op, input).await
    }

    /// Calls `op` as the admin, signed for `region`, and expects success.
    pub(crate) async fn ok_in(&self, region: &str, op: &str, input: Value) -> Value {
        let (status, body) = self.call_in(region, op, input).await;
        assert_eq!(status, 200, "{op} in {region}: {body}");
        body
    }

    /// Calls `op` signed with `creds` for `region`.
    async fn call_signed(
        &self,
        creds: &Credentials,
        region: &str,
        op: &str,
        input: Value,
    ) -> (u16, Value) {
        let body = input.to_string();
        let target = format!("TrentService.{op}");
        let request = cloister_sigv4::JsonRequest {
            host: HOST,
            target: &target,
            body: body.as_bytes(),
            region,
            service: "kms",
        };
        let headers = cloister_sigv4::sign_json_request(
            &request,
            creds,
            time::OffsetDateTime::now_utc(),
            None,
        );
        let mut req = Request::post("/");
        for (n, v) in &headers {
            req = req.header(n, v);
        }
        let resp = self
            .router
            .clone()
            .oneshot(req.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    /// Calls `op` as the admin and expects success.
    pub(crate) async fn ok(&self, op: &str, input: Value) -> Value {
        let (status, body) = self.call(op, input).await;
        assert_eq!(status, 200, "{op}: {body}");
        body
    }

    /// Creates a key with the default policy; its id.
    pub(crate) async fn new_key(&self) -> String {
        let k = self.ok("CreateKey", serde_json::json!({})).await;
        k["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned()
    }

    pub(crate) fn key_arn(&self, id: &str) -> String {
        format!("arn:aws:kms:us-east-1:111122223333:key/{id}")
    }

    /// The newest audit entry.
    pub(crate) fn last_audit(&self) -> AuditEntry {
        let tail = Store::open_read_only(self.dir.path())
            .unwrap()
            .audit_tail(1)
            .unwrap();
        serde_json::from_str(&tail[0].json).unwrap()
    }

    /// The data directory.
    pub(crate) fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// How many keys the KMS holds in memory.
    pub(crate) fn key_count(&self) -> usize {
        self.app.state().keys.len()
    }

    /// A base64 member of an output, decoded.
    pub(crate) fn blob(v: &Value) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap()
    }
}

pub(crate) fn credentials(id: &str, secret: &str) -> Credentials {
    Credentials {
        access_key_id: id.to_owned(),
        secret_access_key: zeroize::Zeroizing::new(secret.to_owned()),
        session_token: None,
    }
}
