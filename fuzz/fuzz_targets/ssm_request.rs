//! What Parameter Store decodes from an untrusted request before it reads any parameter: each
//! operation's typed JSON input and its checks (names, selectors, paths, filters, labels, tags,
//! AllowedPattern compiled from the request, NextToken).
#![no_main]

use cloister_kms::decode_ssm_input;
use libfuzzer_sys::fuzz_target;

const OPERATIONS: &[&str] = &[
    "PutParameter",
    "GetParameter",
    "GetParameters",
    "GetParametersByPath",
    "GetParameterHistory",
    "DeleteParameter",
    "DeleteParameters",
    "DescribeParameters",
    "LabelParameterVersion",
    "UnlabelParameterVersion",
    "AddTagsToResource",
    "RemoveTagsFromResource",
    "ListTagsForResource",
];

fuzz_target!(|data: &[u8]| {
    for op in OPERATIONS {
        let _ = decode_ssm_input(op, data);
    }
});
