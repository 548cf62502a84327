//! Test support for the enclave's unit tests: a stand-in KMS reached over an in-memory stream.
//!
//! It is a fake, and only for these unit tests (the real cloister-kms is exercised end to end by
//! `tests/tests/pipeline.rs`). It does what matters to the enclave's side of a release, with real
//! crypto: it verifies the Recipient's attestation document against the emulated NSM's dev root,
//! checks the document's PCR0, and seals the data key to the document's RSA key as CMS. Its
//! behaviour can be switched to a refusal, a plaintext answer or a broken envelope.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cloister_attestation::dev_signer::DevPki;
use cloister_attestation::recipient::{self, RecipientKey};
use cloister_attestation::{
    PcrIndex, PcrValue, Pcrs, Policy, Timestamp, TrustAnchor, Verifier, VerifyAt,
};
use cloister_kms_client::{Connecting, Connector, KmsClient, Stream};
use cloister_nsm::emulator::Emulator;
use cloister_sigv4::Credentials;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use zeroize::Zeroizing;

/// The key ARN the fake KMS wraps keys with.
pub(crate) const KEY_ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/test";
/// The data key it releases.
pub(crate) const DATA_KEY: [u8; 32] = [0x5a; 32];
/// The wrapped form of [`DATA_KEY`] (the fake KMS does not check it: it is opaque to the enclave).
pub(crate) const WRAPPED: &[u8] = b"wrapped data key";

/// How the fake KMS answers a Decrypt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Behaviour {
    /// Verify the document and release the key as CMS.
    Release,
    /// Refuse as a key policy would.
    Deny,
    /// Answer with Plaintext (what no attestation-honouring KMS does).
    Plaintext,
    /// Answer with bytes that are not a CMS envelope.
    BrokenEnvelope,
}

/// The fake KMS's state, shared with its connections.
#[derive(Debug)]
pub(crate) struct FakeKms {
    pub(crate) root: TrustAnchor,
    pub(crate) pcr0: PcrValue,
    pub(crate) behaviour: Behaviour,
    pub(crate) decrypts: AtomicUsize,
}

impl FakeKms {
    /// A KMS that releases only to documents carrying `pcr0`, chained to `root`.
    pub(crate) fn new(root: TrustAnchor, pcr0: PcrValue, behaviour: Behaviour) -> Arc<Self> {
        Arc::new(Self {
            root,
            pcr0,
            behaviour,
            decrypts: AtomicUsize::new(0),
        })
    }

    fn answer(&self, target: &str, req: &Value) -> (u16, Value) {
        assert_eq!(target, "TrentService.Decrypt");
        self.decrypts.fetch_add(1, Ordering::SeqCst);
        assert_eq!(req["KeyId"], KEY_ARN);
        let doc = STANDARD
            .decode(req["Recipient"]["AttestationDocument"].as_str().unwrap())
            .unwrap();
        let verified = Verifier::new(vec![self.root.clone()])
            .verify(&doc, VerifyAt::Now, &Policy::new().require_public_key(true))
            .unwrap();
        let deny = || {
            (
                400,
                json!({"__type": "AccessDeniedException", "message": "not this image"}),
            )
        };
        if verified.pcrs.get(PcrIndex::IMAGE) != Some(&self.pcr0) {
            return deny();
        }
        let to = RecipientKey::from_spki_der(verified.public_key.as_deref().unwrap()).unwrap();
        match self.behaviour {
            Behaviour::Deny => deny(),
            Behaviour::Plaintext => (
                200,
                json!({"KeyId": KEY_ARN, "Plaintext": STANDARD.encode(DATA_KEY)}),
            ),
            Behaviour::BrokenEnvelope => (
                200,
                json!({"KeyId": KEY_ARN, "CiphertextForRecipient": STANDARD.encode(b"not CMS")}),
            ),
            Behaviour::Release => (
                200,
                json!({
                    "KeyId": KEY_ARN,
                    "CiphertextForRecipient": STANDARD.encode(recipient::seal(&to, &DATA_KEY).unwrap()),
                }),
            ),
        }
    }
}

/// A KMS client of `kms` (over an in-memory stream), with throwaway credentials and no
/// retries.
pub(crate) fn client(kms: &Arc<FakeKms>) -> KmsClient {
    let kms = kms.clone();
    Scripted::new(move |target, req| kms.answer(target, req)).client()
}

/// An emulated NSM whose PCR0 is `pcr0`, and its dev root (for a fake KMS to trust).
pub(crate) fn nsm(pcr0: PcrValue) -> (Emulator, TrustAnchor) {
    let pki = DevPki::generate(Timestamp::now()).unwrap();
    let root = pki.trust_anchor().unwrap();
    let pcrs: Pcrs = [(PcrIndex::IMAGE, pcr0)].into_iter().collect();
    (
        Emulator::new(pki, "i-0test-enc0123456789abcdef".into(), &pcrs),
        root,
    )
}

/// A stand-in service answering each request with `answer(target, request)`; every request is
/// kept (target and JSON body) for the test to inspect.
type Answer = dyn Fn(&str, &Value) -> (u16, Value) + Send + Sync;

/// A scripted service (any of KMS, Secrets Manager, Parameter Store) over an in-memory stream.
#[derive(Clone)]
pub(crate) struct Scripted {
    answer: Arc<Answer>,
    pub(crate) seen: Arc<std::sync::Mutex<Vec<(String, Value)>>>,
}

impl std::fmt::Debug for Scripted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scripted").finish_non_exhaustive()
    }
}

impl Scripted {
    pub(crate) fn new(
        answer: impl Fn(&str, &Value) -> (u16, Value) + Send + Sync + 'static,
    ) -> Self {
        Self {
            answer: Arc::new(answer),
            seen: Arc::default(),
        }
    }

    /// A client of this service with throwaway credentials and no retries.
    pub(crate) fn client(&self) -> KmsClient {
        let creds = Credentials {
            access_key_id: "AKIDTEST".into(),
            secret_access_key: Zeroizing::new("secret".into()),
            session_token: None,
        };
        KmsClient::new(self.clone(), "kms.test", "us-east-1", creds).with_retry(
            cloister_kms_client::Retry {
                attempts: 1,
                ..Default::default()
            },
        )
    }
}

impl Connector for Scripted {
    fn connect(&self) -> Connecting<'_> {
        let me = self.clone();
        Box::pin(async move {
            let (client, server) = tokio::io::duplex(1 << 16);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let me = me.clone();
                        async move {
                            let target = req.headers()["x-amz-target"].to_str().unwrap().to_owned();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let body: Value = serde_json::from_slice(&body).unwrap();
                            let (status, answer) = (me.answer)(&target, &body);
                            me.seen.lock().unwrap().push((target, body));
                            hyper::Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::from(answer.to_string())))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(server), service)
                    .await;
            });
            Ok(Box::new(client) as Box<dyn Stream>)
        })
    }
}

/// `plain` sealed as CMS to the key the request's Recipient document binds (verified against
/// `root`), base64: what an attestation-honouring service answers as `CiphertextForRecipient`.
pub(crate) fn seal_to_recipient(root: &TrustAnchor, request: &Value, plain: &[u8]) -> String {
    let doc = STANDARD
        .decode(
            request["Recipient"]["AttestationDocument"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    let verified = Verifier::new(vec![root.clone()])
        .verify(&doc, VerifyAt::Now, &Policy::new().require_public_key(true))
        .unwrap();
    let to = RecipientKey::from_spki_der(verified.public_key.as_deref().unwrap()).unwrap();
    STANDARD.encode(recipient::seal(&to, plain).unwrap())
}
