//! `--store`'s value: typed by an operator, possibly pasted from elsewhere, and holding a
//! password. Parsing must never panic, and neither a parsed URL as shown (`Display`, `Debug`)
//! nor an error may show the password of the URL's user info.
#![no_main]

use cloister_kms::StoreUrl;
use libfuzzer_sys::fuzz_target;

/// The seed's password: when it is the user info's password (and appears nowhere else), it
/// must not be shown.
const PASSWORD: &str = "Zp4ssw0rdZ";

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let authority = s
        .split_once("://")
        .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or(""))
        .unwrap_or("");
    // Only a PostgreSQL URL has user info; a sqlite:// path is a file name, shown as it is.
    let postgres = s.starts_with("postgres://") || s.starts_with("postgresql://");
    let secret = postgres
        && authority.contains(&format!(":{PASSWORD}@"))
        && s.matches(PASSWORD).count() == 1;
    let shown = match StoreUrl::parse(s) {
        Ok(url) => format!("{url} {url:?}"),
        Err(e) => e.to_string(),
    };
    if secret {
        assert!(!shown.contains(PASSWORD), "password shown: {shown}");
    }
});
