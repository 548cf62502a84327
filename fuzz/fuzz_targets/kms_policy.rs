//! Key policy parsing and evaluation on arbitrary text: errors, never panics.
#![no_main]

use cloister_kms::policy::{KeyPolicy, RequestContext};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(policy) = KeyPolicy::parse(text) {
        let mut ctx = RequestContext {
            principal_arn: "arn:aws:iam::111122223333:root",
            action: "kms:Decrypt",
            resource: "arn:aws:kms:us-east-1:111122223333:key/k",
            ..Default::default()
        };
        ctx.conditions.insert("kms:encryptioncontextkeys".into(), vec!["a".into(), "b*".into()]);
        ctx.conditions.insert("kms:recipientattestation:imagesha384".into(), vec!["00".into()]);
        let _ = policy.evaluate(&ctx);
    }
});
