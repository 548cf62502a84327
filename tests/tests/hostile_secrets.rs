//! The host against the enclave's secrets, end to end (process mode, the real `cloister`
//! binaries): the host changes an enclave-only secret's key to the AWS managed key (UpdateSecret
//! is open to every principal) and seals its own AWSCURRENT there, which the service opens for
//! the attested enclave as that secret. An entry that pins `key` refuses it (`KMS-MISMATCH`);
//! one that does not takes the host's value, which is why the README tells owners to pin.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use cloister_kms_client::{Api, KmsClient, SecretData};
use cloister_sigv4::Credentials;
use cloister_tests::pipeline::{HOST, Pipeline};
use serde_json::{Value, json};
use zeroize::Zeroizing;

const ROOT: &str = "arn:aws:iam::111122223333:root";
const OWNER_VALUE: &str = "owner-value-Jt5rWq2Ze";
const HOST_VALUE: &str = "host-value-Xc8mBn3Lp";

#[derive(Debug, Default)]
struct Made {
    key: String,
    pinned: (String, String),
    unpinned: (String, String),
}

fn host_client(p: &Pipeline) -> KmsClient {
    let a = p.access();
    p.kms.tls_client(Credentials {
        access_key_id: a.access_key_id.clone(),
        secret_access_key: Zeroizing::new(a.secret_access_key.expose().to_owned()),
        session_token: None,
    })
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
fn a_pinned_key_refuses_the_hosts_value_under_a_swapped_key() {
    let mut made = Made::default();
    let p = Pipeline::start_with(None, |kms| {
        let owner = kms.client(kms.admin());
        let rt = cloister_tests::kms::rt();
        made.key = rt
            .block_on(owner.call_api(Api::Kms, "CreateKey", &json!({})))
            .unwrap()["KeyMetadata"]["Arn"]
            .as_str()
            .unwrap()
            .to_owned();
        for (name, slot) in [
            ("pinned", &mut made.pinned),
            ("unpinned", &mut made.unpinned),
        ] {
            let c = rt
                .block_on(owner.create_secret(
                    name,
                    Some(&made.key),
                    None,
                    Some((
                        &format!("00000000-0000-4000-8000-00000000000{}", name.len() % 10),
                        &SecretData::String(Zeroizing::new(OWNER_VALUE.into())),
                    )),
                ))
                .unwrap();
            *slot = (c.arn, c.version_id.unwrap());
        }
        format!(
            "[operations.secrets]\nreport_length = true\n\
             [[secrets]]\nname = \"pinned\"\nsource = \"secretsmanager\"\narn = \"{}\"\n\
             release = \"recipient\"\nkey = \"{}\"\n\
             [[secrets]]\nname = \"unpinned\"\nsource = \"secretsmanager\"\narn = \"{}\"\n\
             release = \"recipient\"\n",
            made.pinned.0, made.key, made.unpinned.0
        )
    });
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": ROOT}, "Resource": "*",
         "Action": ["kms:Describe*", "kms:Get*", "kms:Put*", "kms:Encrypt", "kms:GenerateDataKey*"]},
        {"Effect": "Allow", "Principal": {"AWS": HOST}, "Action": "kms:Decrypt", "Resource": "*",
         "Condition": {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:ImageSha384": p.pcr0}}},
        {"Effect": "Deny", "Principal": {"AWS": HOST}, "Action": "kms:*", "Resource": "*",
         "Condition": {"Null": {"kms:RecipientAttestation:ImageSha384": "true"}}}]});
    let rt = cloister_tests::kms::rt();
    rt.block_on(p.kms.client(p.kms.admin()).call(
        "PutKeyPolicy",
        &json!({"KeyId": made.key, "Policy": policy.to_string()}),
    ))
    .unwrap();

    // Before the attack: both fetched, the owner's version.
    let (code, r) = rows(&p);
    assert_eq!(code, 0, "{r:?}");
    assert_eq!(r["pinned"]["outcome"], "fetched", "{r:?}");
    assert_eq!(r["pinned"]["version_id"], made.pinned.1.as_str());
    assert_eq!(r["unpinned"]["version_id"], made.unpinned.1.as_str());

    // The host swaps each secret's key for the managed one and seals its own AWSCURRENT.
    let host = host_client(&p);
    let sm = |op: &str, body: Value| {
        rt.block_on(host.call_api(Api::SecretsManager, op, &body))
            .unwrap_or_else(|e| panic!("{op}: {e}"))
    };
    sm(
        "CreateSecret",
        json!({"Name": "host/own", "SecretString": "x"}),
    );
    for arn in [&made.pinned.0, &made.unpinned.0] {
        sm(
            "UpdateSecret",
            json!({"SecretId": arn, "KmsKeyId": "alias/aws/secretsmanager",
                   "SecretString": HOST_VALUE}),
        );
    }

    let (code, r) = rows(&p);
    assert_ne!(code, 0, "{r:?}");
    assert_eq!(r["pinned"]["outcome"], "failed", "{r:?}");
    assert_eq!(r["pinned"]["code"], "KMS-MISMATCH", "{r:?}");
    assert!(r["pinned"].get("length").is_none());
    // Unpinned, the enclave takes the host's version (the trust model's limitation).
    assert_eq!(r["unpinned"]["outcome"], "fetched", "{r:?}");
    assert_ne!(r["unpinned"]["version_id"], made.unpinned.1.as_str());
    assert_eq!(r["unpinned"]["length"], HOST_VALUE.len());
}
