//! The host against the enclave's secrets, end to end (process mode, the real `cloister`
//! binaries): the host tries to choose the value the enclave gets — move an enclave-only secret
//! to the AWS managed key and seal its own AWSCURRENT there, or roll AWSCURRENT back to an older
//! version — and is refused by cloister-kms (both need what writing the value needs). A version
//! sealed under another key than the one the image names (here the owner's own re-keying, as a
//! service with looser rules than cloister-kms's would allow anyone) is refused by the enclave
//! (`KMS-MISMATCH`): every `[[secrets]]` entry names its key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use cloister_kms_client::{Api, SecretData};
use cloister_tests::pipeline::Pipeline;
use serde_json::{Value, json};
use zeroize::Zeroizing;

const OWNER_VALUE: &str = "owner-value-Jt5rWq2Ze";
const HOST_VALUE: &str = "host-value-Xc8mBn3Lp";

#[derive(Debug, Default)]
struct Made {
    key: String,
    other_key: String,
    secret: (String, String),
}

fn rows(p: &Pipeline) -> (i32, std::collections::BTreeMap<String, Value>) {
    let (code, out, err) = p.submit(&["secrets"], &[]);
    let seen = format!("{out}\n{err}\n{}", p.proxy.lock().unwrap());
    assert!(
        !seen.contains(OWNER_VALUE) && !seen.contains(HOST_VALUE),
        "{seen}"
    );
    let rows = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .map(|r| (r["name"].as_str().unwrap().to_owned(), r))
        .collect();
    (code, rows)
}

#[test]
fn the_host_cannot_choose_the_value_and_another_key_is_refused_by_the_enclave() {
    let mut made = Made::default();
    let p = Pipeline::start_with(None, |kms| {
        let owner = kms.client(kms.admin());
        let rt = cloister_tests::kms::rt();
        let create = || {
            rt.block_on(owner.call_api(Api::Kms, "CreateKey", &json!({})))
                .unwrap()["KeyMetadata"]["Arn"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        made.key = create();
        made.other_key = create();
        let c = rt
            .block_on(owner.create_secret(
                "db",
                Some(&made.key),
                None,
                Some((
                    "00000000-0000-4000-8000-000000000001",
                    &SecretData::String(Zeroizing::new(OWNER_VALUE.into())),
                )),
            ))
            .unwrap();
        made.secret = (c.arn, c.version_id.unwrap());
        // A second version, so there is an older one to roll back to.
        rt.block_on(owner.call_api(
            Api::SecretsManager,
            "PutSecretValue",
            &json!({"SecretId": made.secret.0, "SecretString": OWNER_VALUE,
                    "ClientRequestToken": "00000000-0000-4000-8000-000000000002"}),
        ))
        .unwrap();
        made.secret.1 = "00000000-0000-4000-8000-000000000002".into();
        format!(
            "[operations.secrets]\nreport_length = true\n\
             [[secrets]]\nname = \"db\"\nsource = \"secretsmanager\"\narn = \"{}\"\n\
             release = \"recipient\"\nkey = \"{}\"\n",
            made.secret.0, made.key
        )
    });
    // Both keys are enclave-only: the other one releases to this image too, so only the
    // enclave's own check stands between it and a value under a key it does not name.
    for key in [&made.key, &made.other_key] {
        p.make_enclave_only(key, &p.pcr0);
    }
    let rt = cloister_tests::kms::rt();
    let owner = p.kms.client(p.kms.admin());

    let fetched = |version: &str| {
        let (code, r) = rows(&p);
        assert_eq!(code, 0, "{r:?}");
        assert_eq!(r["db"]["outcome"], "fetched", "{r:?}");
        assert_eq!(r["db"]["version_id"], version, "{r:?}");
    };
    fetched(&made.secret.1);

    // The host may not move the secret to a key it may use, with or without a value of its
    // own, nor roll AWSCURRENT back: each refused, and the enclave still gets the owner's.
    let host = p.host_client();
    let refused = |op: &str, body: Value| {
        let e = rt
            .block_on(host.call_api(Api::SecretsManager, op, &body))
            .unwrap_err();
        assert!(e.to_string().contains("AccessDeniedException"), "{op}: {e}");
    };
    rt.block_on(host.call_api(
        Api::SecretsManager,
        "CreateSecret",
        &json!({"Name": "host/own", "SecretString": "x"}),
    ))
    .unwrap();
    refused(
        "UpdateSecret",
        json!({"SecretId": made.secret.0, "KmsKeyId": "alias/aws/secretsmanager",
               "SecretString": HOST_VALUE}),
    );
    refused(
        "UpdateSecret",
        json!({"SecretId": made.secret.0, "KmsKeyId": "alias/aws/secretsmanager"}),
    );
    refused(
        "UpdateSecretVersionStage",
        json!({"SecretId": made.secret.0, "VersionStage": "AWSCURRENT",
               "MoveToVersionId": "00000000-0000-4000-8000-000000000001",
               "RemoveFromVersionId": made.secret.1}),
    );
    fetched(&made.secret.1);

    // A value under another key than the image names is not the owner's as far as the enclave
    // knows: the owner moves the secret to another key and writes there; the enclave refuses it.
    let sm = |op: &str, body: Value| {
        rt.block_on(owner.call_api(Api::SecretsManager, op, &body))
            .unwrap_or_else(|e| panic!("{op}: {e}"))
    };
    sm(
        "UpdateSecret",
        json!({"SecretId": made.secret.0, "KmsKeyId": made.other_key}),
    );
    sm(
        "PutSecretValue",
        json!({"SecretId": made.secret.0, "SecretString": HOST_VALUE}),
    );
    let (code, r) = rows(&p);
    assert_ne!(code, 0, "{r:?}");
    assert_eq!(r["db"]["outcome"], "failed", "{r:?}");
    assert_eq!(r["db"]["code"], "KMS-MISMATCH", "{r:?}");
    assert!(r["db"].get("length").is_none());
}
