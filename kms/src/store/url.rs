//! `--store <URL>`: where the store lives, parsed from what the operator typed.
//!
//! - `sqlite://<path>`: the SQLite file (relative paths are relative to the working directory;
//!   `sqlite:///abs/kms.sqlite3` for an absolute one).
//! - `postgres://` or `postgresql://user[:password]@host[:port]/dbname?sslmode=...&sslrootcert=...`:
//!   a PostgreSQL database. Everything but `sslmode` and `sslrootcert` is read by
//!   `tokio_postgres::Config`'s own parser (`connect_timeout`, `application_name`, `options`,
//!   `host=/socket/dir`, ...).
//!
//! cloister-kms does not speak TLS to its database without verifying it: `sslmode` is
//! `disable` (plain; the default only when every host is loopback or a unix socket directory)
//! or `verify-full` with `sslrootcert=<PEM file>` (chain and host name checked). `prefer`,
//! `allow`, `require` and `verify-ca` are refused, and a remote host without an `sslmode` is
//! refused rather than guessed.
//!
//! The URL may hold a password: [`StoreUrl`]'s `Display` and `Debug` replace it with `***`, and
//! no error message repeats the URL as typed.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::SetupError;

/// Where the store lives.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// A SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL database.
    Postgres(Box<PgTarget>),
}

/// How the connection to PostgreSQL is protected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PgTls {
    /// Plain TCP or a unix socket (`sslmode=disable`).
    Disable,
    /// TLS, the server's chain verified up to this PEM file's certificates and its name
    /// checked (`sslmode=verify-full`).
    VerifyFull {
        /// The CA certificates (PEM).
        root_cert: PathBuf,
    },
}

/// A PostgreSQL database to connect to: the driver's configuration and how TLS is done.
#[derive(Clone)]
pub struct PgTarget {
    config: tokio_postgres::Config,
    tls: PgTls,
    redacted: String,
}

impl PartialEq for PgTarget {
    fn eq(&self, other: &Self) -> bool {
        // The driver's config has no equality; the redacted URL plus the password do.
        self.redacted == other.redacted
            && self.config.get_password() == other.config.get_password()
            && self.tls == other.tls
    }
}

impl Eq for PgTarget {}

impl PgTarget {
    /// The driver's configuration (with `ssl_mode` set to match [`PgTarget::tls`]).
    pub(crate) fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// How TLS is done.
    pub(crate) fn tls(&self) -> &PgTls {
        &self.tls
    }
}

impl fmt::Display for PgTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PgTarget({})", self.redacted)
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            Self::Postgres(target) => target.fmt(f),
        }
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreUrl({self})")
    }
}

impl FromStr for StoreUrl {
    type Err = SetupError;

    fn from_str(s: &str) -> Result<Self, SetupError> {
        Self::parse(s)
    }
}

fn bad(reason: impl Into<String>) -> SetupError {
    SetupError::StoreUrl(reason.into())
}

impl StoreUrl {
    /// Parses `--store`'s value.
    pub fn parse(s: &str) -> Result<Self, SetupError> {
        if let Some(path) = s.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(bad(
                    "sqlite:// needs the database file's path, as in sqlite://kms.sqlite3 or sqlite:///var/lib/kms/kms.sqlite3",
                ));
            }
            if path.contains('\0') {
                return Err(bad("the sqlite:// path holds a NUL byte"));
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return parse_postgres(s).map(|t| Self::Postgres(Box::new(t)));
        }
        Err(bad(
            "the store URL must start with sqlite:// or postgres:// (or postgresql://)",
        ))
    }
}

/// Percent-decodes `s` (as `tokio_postgres` does for URL parts).
fn percent_decode(s: &str) -> Result<String, SetupError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| bad("a %-escape in the query is not two hex digits"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad("a query value is not UTF-8 once %-decoded"))
}

/// The URL as typed with its password (in the user info or a `password=` query parameter)
/// replaced by `***`.
///
/// The user info ends where the driver ends it (the first `@`, whatever precedes it: a `/` or a
/// `?` in an unescaped password too), or later if the host part that follows holds another `@`
/// (an unescaped `@` in the password): everything after the user info's first `:` is hidden.
fn redact(s: &str) -> String {
    let (scheme, rest) = s.split_once("://").unwrap_or(("", s));
    let (user_info, after) = match rest.find('@') {
        Some(mut at) => {
            // An unescaped `@` in the password: the host part is after the last `@` before the
            // path or the query.
            while let Some(next) = rest[at + 1..]
                .split(['/', '?'])
                .next()
                .and_then(|host| host.find('@'))
            {
                at += 1 + next;
            }
            (Some(&rest[..at]), &rest[at + 1..])
        }
        None => (None, rest),
    };
    let mut out = format!("{scheme}://");
    if let Some(user_info) = user_info {
        match user_info.split_once(':') {
            Some((user, _)) => out.push_str(&format!("{user}:***@")),
            None => out.push_str(&format!("{user_info}@")),
        }
    }
    let (base, query) = match after.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (after, None),
    };
    out.push_str(base);
    if let Some(q) = query {
        let pairs: Vec<String> = q
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if percent_decode(k).is_ok_and(|k| k == "password") => {
                    format!("{k}=***")
                }
                _ => pair.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    out
}

/// Whether `host` is a loopback name or address.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn parse_postgres(s: &str) -> Result<PgTarget, SetupError> {
    let redacted = redact(s);
    let (base, query) = match s.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (s, None),
    };
    let mut sslmode: Option<String> = None;
    let mut sslrootcert: Option<String> = None;
    let mut kept: Vec<&str> = Vec::new();
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        if pair.is_empty() {
            continue;
        }
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match key {
            "sslmode" => &mut sslmode,
            "sslrootcert" => &mut sslrootcert,
            _ => {
                kept.push(pair);
                continue;
            }
        };
        if slot.is_some() {
            return Err(bad(format!("{key} is given twice")));
        }
        *slot = Some(percent_decode(value)?);
    }
    let rebuilt = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let mut config =
        tokio_postgres::Config::from_str(&rebuilt).map_err(|e| bad(format!("{redacted}: {e}")))?;
    if config.get_hosts().is_empty() {
        return Err(bad(format!("{redacted}: no host")));
    }
    if config.get_user().is_none() {
        return Err(bad(format!(
            "{redacted}: no user (postgres://USER@host/dbname)"
        )));
    }
    if config.get_dbname().is_none() {
        return Err(bad(format!(
            "{redacted}: no database name (postgres://user@host/DBNAME)"
        )));
    }
    // `hostaddr=` is where the driver connects (the host name only names it): both must be
    // local for the plain default.
    let local = config.get_hosts().iter().all(|h| match h {
        tokio_postgres::config::Host::Tcp(name) => is_loopback(name),
        tokio_postgres::config::Host::Unix(_) => true,
    }) && config.get_hostaddrs().iter().all(IpAddr::is_loopback);
    let tls = match sslmode.as_deref() {
        Some("disable") => PgTls::Disable,
        None if local => PgTls::Disable,
        None => {
            return Err(bad(format!(
                "{redacted}: the database is not on this machine: give sslmode=verify-full&sslrootcert=<CA PEM file> (or sslmode=disable to send everything in the clear)"
            )));
        }
        Some("verify-full") => {
            let Some(root) = sslrootcert.take() else {
                return Err(bad(format!(
                    "{redacted}: sslmode=verify-full needs sslrootcert=<CA PEM file>"
                )));
            };
            if root.is_empty() {
                return Err(bad(format!("{redacted}: sslrootcert is empty")));
            }
            PgTls::VerifyFull {
                root_cert: PathBuf::from(root),
            }
        }
        Some(mode @ ("prefer" | "allow" | "require" | "verify-ca")) => {
            return Err(bad(format!(
                "{redacted}: sslmode={mode} is refused: cloister-kms does not speak TLS to its database without verifying it; use sslmode=verify-full&sslrootcert=<CA PEM file>, or sslmode=disable"
            )));
        }
        Some(_) => {
            return Err(bad(format!(
                "{redacted}: sslmode must be disable or verify-full"
            )));
        }
    };
    if sslrootcert.is_some() {
        return Err(bad(format!(
            "{redacted}: sslrootcert is only read with sslmode=verify-full"
        )));
    }
    config.ssl_mode(match tls {
        PgTls::Disable => tokio_postgres::config::SslMode::Disable,
        PgTls::VerifyFull { .. } => tokio_postgres::config::SslMode::Require,
    });
    Ok(PgTarget {
        config,
        tls,
        redacted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> String {
        StoreUrl::parse(s).unwrap_err().to_string()
    }

    #[test]
    fn sqlite_urls_name_a_file() {
        assert_eq!(
            StoreUrl::parse("sqlite://kms.sqlite3").unwrap(),
            StoreUrl::Sqlite("kms.sqlite3".into())
        );
        assert_eq!(
            StoreUrl::parse("sqlite:///var/lib/kms/db").unwrap(),
            StoreUrl::Sqlite("/var/lib/kms/db".into())
        );
        assert!(err("sqlite://").contains("error[KMS-STORE-URL]"));
        assert!(err("kms.sqlite3").contains("must start with"));
        assert!(err("mysql://a@b/c").contains("must start with"));
    }

    #[test]
    fn postgres_urls_parse_and_redact_the_password() {
        let url = StoreUrl::parse(
            "postgres://kms:s3cr%40t@127.0.0.1:5433/kms?connect_timeout=5&application_name=node1",
        )
        .unwrap();
        let StoreUrl::Postgres(t) = &url else {
            panic!("not postgres")
        };
        assert_eq!(t.config().get_user(), Some("kms"));
        assert_eq!(t.config().get_password(), Some(&b"s3cr@t"[..]));
        assert_eq!(t.config().get_dbname(), Some("kms"));
        assert_eq!(t.config().get_ports(), &[5433]);
        assert_eq!(t.config().get_application_name(), Some("node1"));
        assert_eq!(t.tls(), &PgTls::Disable);
        let shown = format!("{url} {url:?}");
        assert!(!shown.contains("s3cr"), "{shown}");
        assert!(shown.contains("kms:***@127.0.0.1:5433/kms"), "{shown}");

        let q = StoreUrl::parse("postgresql://kms@localhost/kms?password=hunter2").unwrap();
        assert!(!q.to_string().contains("hunter2"));
    }

    #[test]
    fn tls_is_verified_or_off_never_half() {
        let t = StoreUrl::parse(
            "postgres://kms@db.example/kms?sslmode=verify-full&sslrootcert=/etc/ca%20x.pem",
        )
        .unwrap();
        let StoreUrl::Postgres(t) = t else {
            panic!("not postgres")
        };
        assert_eq!(
            t.tls(),
            &PgTls::VerifyFull {
                root_cert: "/etc/ca x.pem".into()
            }
        );
        for mode in ["prefer", "allow", "require", "verify-ca"] {
            let e = err(&format!("postgres://kms@db.example/kms?sslmode={mode}"));
            assert!(e.contains("without verifying it"), "{e}");
        }
        assert!(err("postgres://kms@db.example/kms").contains("not on this machine"));
        assert!(err("postgres://kms@db.example/kms?sslmode=verify-full").contains("sslrootcert"));
        assert!(
            err("postgres://kms@db.example/kms?sslmode=bogus").contains("disable or verify-full")
        );
        assert!(
            err("postgres://kms@localhost/kms?sslmode=disable&sslrootcert=/x")
                .contains("only read")
        );
        assert!(
            err("postgres://kms@localhost/kms?sslmode=disable&sslmode=disable").contains("twice")
        );
        // Loopback and unix sockets default to plain.
        assert!(StoreUrl::parse("postgres://kms@[::1]:5432/kms").is_ok());
        assert!(StoreUrl::parse("postgres://kms@%2Ftmp%2Fpg/kms").is_ok());
        assert!(StoreUrl::parse("postgres://kms@db.example/kms?sslmode=disable").is_ok());
    }

    #[test]
    fn incomplete_postgres_urls_are_refused_without_echoing_the_password() {
        assert!(err("postgres://kms:pw@localhost").contains("no database name"));
        assert!(err("postgres://localhost/kms").contains("no user"));
        let e = err("postgres://kms:topsecret@localhost/kms?bogus_option=1");
        assert!(!e.contains("topsecret"), "{e}");
        assert!(err("postgres://kms@localhost/kms?sslrootcert=%zz").contains("%-escape"));
    }

    #[test]
    fn a_password_with_unescaped_separators_is_hidden_too() {
        for url in [
            "postgres://kms:Pw/s3cret@db.example.com/kms",
            "postgres://kms:Pw?s3cret@db.example.com/kms",
            "postgres://kms:Pw@s3cret@db.example.com/kms",
            "postgres://kms:Pw:s3cret@db.example.com/kms?sslmode=require",
            "postgres://kms@db.example.com/kms?pass%77ord=s3cret",
            "postgres://kms:x@localhost/kms?password=s3cret&bogus=1",
        ] {
            assert_eq!(StoreUrl::parse(url).ok(), None, "{url}");
            let e = err(url);
            assert!(!e.contains("s3cret"), "{e}");
            assert!(e.contains("kms"), "{e}");
            assert!(!redact(url).contains("s3cret"), "{url}");
        }
        assert_eq!(
            redact("postgres://kms:a/b@db:5/kms?sslmode=disable"),
            "postgres://kms:***@db:5/kms?sslmode=disable"
        );
        assert_eq!(redact("postgres://db/kms"), "postgres://db/kms");
    }

    #[test]
    fn a_remote_hostaddr_behind_a_loopback_host_name_needs_verified_tls() {
        let e = err("postgres://kms@localhost/kms?hostaddr=203.0.113.5");
        assert!(e.contains("not on this machine"), "{e}");
        assert!(StoreUrl::parse("postgres://kms@localhost/kms?hostaddr=127.0.0.1").is_ok());
    }
}
