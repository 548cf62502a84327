//! The PostgreSQL engine: [`Sql`] over one `tokio-postgres` connection, for a store shared by
//! several cloister-kms nodes.
//!
//! The store is synchronous (one writer thread, CLI commands), the driver is async: each
//! connection's I/O runs on one background thread of this module (a current-thread tokio
//! runtime), and a statement waits for its answer with `futures_executor::block_on`, which works
//! on any thread, inside a tokio runtime or not.
//!
//! Statements are the store's SQL (`?1`, `?2`, ... placeholders, numbered `$1` here); values are
//! SQLite's five types, bound as the statement's parameter types say (`BIGINT`, `TEXT`,
//! `BYTEA`) and read back as the same values, so a row's MAC verifies on either engine.
//!
//! Failures are sorted: a lost or refused connection, a server shutting down or refusing
//! connections, a serialization failure or deadlock, a statement timeout are
//! [`StoreError::Unavailable`] (nothing of the statement or its transaction was committed; retry
//! the request), everything else [`StoreError::Postgres`] with its SQLSTATE. One exception the
//! caller must know: a connection lost while `COMMIT` was on the wire leaves the outcome unknown,
//! and the error says so.
//!
//! A lost connection is not rebuilt behind a transaction's back: outside a transaction the next
//! statement reconnects (one attempt, no sleeping: callers retry with backoff); inside one, every
//! statement fails as unavailable until the store sends `ROLLBACK`. Transactions are the plain
//! `BEGIN`/`COMMIT`/`ROLLBACK` statements `sql::transaction` sends through [`Sql::batch`], which
//! this engine watches for that purpose.
//!
//! TLS: `sslmode=disable`, or `verify-full` (rustls, aws-lc-rs, the chain checked against the
//! `sslrootcert` file, read again at every connection so a rotated CA is picked up, and the
//! server's name checked). cloister-kms does not speak TLS to its database without verifying it:
//! `url.rs` refuses the modes that would.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use futures_util::{StreamExt, pin_mut};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls, Statement};

use super::sql::{Engine, Row, Sql, Value};
use super::url::{PgTarget, PgTls};
use crate::error::StoreError;

/// How long a connection attempt may take when the URL gives no `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long unacknowledged data may sit on a connection before the kernel drops it (when the URL
/// gives no `tcp_user_timeout`): a database that vanished without a reset is noticed in bounded
/// time.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

/// Prepared statements kept per connection before the cache starts over.
const STATEMENT_CACHE: usize = 512;

/// Whether a transaction is open on the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tx {
    /// Autocommit.
    None,
    /// `BEGIN` ran on the current connection.
    Open,
    /// `BEGIN` ran on a connection since lost: nothing works until `ROLLBACK`.
    Lost,
}

struct Inner {
    client: Option<Arc<Client>>,
    statements: HashMap<String, Statement>,
    tx: Tx,
}

/// One connection to the store's PostgreSQL database, rebuilt when lost (see the header).
pub(crate) struct PgConn {
    target: PgTarget,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for PgConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgConn({})", self.target)
    }
}

/// The runtime that drives every connection's I/O, started on first use.
fn runtime() -> Result<&'static tokio::runtime::Handle, StoreError> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Handle, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            let handle = rt.handle().clone();
            std::thread::Builder::new()
                .name("kms-postgres".into())
                .spawn(move || rt.block_on(std::future::pending::<()>()))
                .map_err(|e| e.to_string())?;
            Ok(handle)
        })
        .as_ref()
        .map_err(|e| {
            StoreError::Unavailable(format!("cannot start the PostgreSQL driver's thread: {e}"))
        })
}

/// Whether SQLSTATE `code` means "not now, retry": nothing was committed.
fn retryable(code: &str) -> bool {
    code.starts_with("08")
        || matches!(
            code,
            "57P01" | "57P02" | "57P03" | "53300" | "40001" | "40P01" | "57014"
        )
}

/// The driver's error, sorted (see the header).
fn classify(e: &tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            if retryable(code) {
                StoreError::Unavailable(format!("PostgreSQL: {} (SQLSTATE {code})", db.message()))
            } else {
                StoreError::Postgres {
                    code: code.to_owned(),
                    message: db.message().to_owned(),
                }
            }
        }
        // Not from the server: the connection (closed, I/O, TLS, timeout). Conversions and
        // parameter counts are checked here before the driver sees them.
        None => StoreError::Unavailable(format!("PostgreSQL connection: {}", chain(e))),
    }
}

/// `e` and its causes, `: `-separated.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

fn mismatch(message: String) -> StoreError {
    StoreError::Postgres {
        code: "42804".into(),
        message,
    }
}

fn lost_in_transaction() -> StoreError {
    StoreError::Unavailable(
        "the connection to PostgreSQL was lost inside a transaction; nothing of it was committed (roll back and retry)".into(),
    )
}

/// `sql` with `?N` placeholders written `$N` (outside single-quoted literals).
fn placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            quoted = !quoted;
        }
        if c == '?' && !quoted && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

/// What a batch does to the transaction state, judged by its last transaction statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxEffect {
    Nothing,
    Begin,
    Commit,
    Rollback,
}

fn tx_effect(sql: &str) -> TxEffect {
    let mut effect = TxEffect::Nothing;
    for stmt in sql.split(';') {
        let words: Vec<String> = stmt
            .split_whitespace()
            .take(2)
            .map(str::to_ascii_uppercase)
            .collect();
        let first = words.first().map(String::as_str);
        let second = words.get(1).map(String::as_str);
        effect = match (first, second) {
            (Some("BEGIN"), _) | (Some("START"), Some("TRANSACTION")) => TxEffect::Begin,
            (Some("COMMIT" | "END"), _) => TxEffect::Commit,
            (Some("ROLLBACK"), Some("TO")) => effect,
            (Some("ROLLBACK" | "ABORT"), _) => TxEffect::Rollback,
            _ => effect,
        };
    }
    effect
}

type Param = Box<dyn ToSql + Sync + Send>;

/// `values` as the parameters of a statement whose parameter types are `types`.
fn bind(values: &[Value], types: &[Type]) -> Result<Vec<Param>, StoreError> {
    if values.len() != types.len() {
        return Err(mismatch(format!(
            "the statement takes {} parameters, {} were given",
            types.len(),
            values.len()
        )));
    }
    values
        .iter()
        .zip(types)
        .enumerate()
        .map(|(i, (v, ty))| {
            bind_one(v, ty).map_err(|what| mismatch(format!("parameter ${}: {what}", i + 1)))
        })
        .collect()
}

fn bind_one(v: &Value, ty: &Type) -> Result<Param, String> {
    let out_of_range = || format!("{v:?} is out of range for {ty}");
    let p: Param = match (ty.name(), v) {
        ("int8", Value::Integer(i)) => Box::new(*i),
        ("int8", Value::Null) => Box::new(None::<i64>),
        ("int4", Value::Integer(i)) => Box::new(i32::try_from(*i).map_err(|_| out_of_range())?),
        ("int4", Value::Null) => Box::new(None::<i32>),
        ("int2", Value::Integer(i)) => Box::new(i16::try_from(*i).map_err(|_| out_of_range())?),
        ("int2", Value::Null) => Box::new(None::<i16>),
        ("bool", Value::Integer(i @ (0 | 1))) => Box::new(*i == 1),
        ("bool", Value::Null) => Box::new(None::<bool>),
        ("float8", Value::Real(f)) => Box::new(*f),
        ("float8", Value::Null) => Box::new(None::<f64>),
        ("text" | "varchar" | "bpchar" | "name", Value::Text(t)) => Box::new(t.clone()),
        ("text" | "varchar" | "bpchar" | "name", Value::Null) => Box::new(None::<String>),
        ("bytea", Value::Blob(b)) => Box::new(b.clone()),
        ("bytea", Value::Null) => Box::new(None::<Vec<u8>>),
        _ => return Err(format!("a {} value cannot be bound to {ty}", kind(v))),
    };
    Ok(p)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "NULL",
        Value::Integer(_) => "integer",
        Value::Real(_) => "real",
        Value::Text(_) => "text",
        Value::Blob(_) => "blob",
    }
}

fn read_row(r: &tokio_postgres::Row) -> Result<Row, StoreError> {
    (0..r.len())
        .map(|i| read_value(r, i))
        .collect::<Result<_, _>>()
        .map(Row)
}

fn read_value(r: &tokio_postgres::Row, i: usize) -> Result<Value, StoreError> {
    let ty = r
        .columns()
        .get(i)
        .map(|c| c.type_().clone())
        .ok_or(StoreError::Corrupt("a column is missing"))?;
    let read = |e: tokio_postgres::Error| mismatch(format!("column {i} ({ty}): {e}"));
    let v = match ty.name() {
        "int8" => r
            .try_get::<_, Option<i64>>(i)
            .map_err(read)?
            .map(Value::Integer),
        "int4" => r
            .try_get::<_, Option<i32>>(i)
            .map_err(read)?
            .map(|n| Value::Integer(n.into())),
        "int2" => r
            .try_get::<_, Option<i16>>(i)
            .map_err(read)?
            .map(|n| Value::Integer(n.into())),
        "oid" => r
            .try_get::<_, Option<u32>>(i)
            .map_err(read)?
            .map(|n| Value::Integer(n.into())),
        "bool" => r
            .try_get::<_, Option<bool>>(i)
            .map_err(read)?
            .map(|b| Value::Integer(b.into())),
        "float8" => r
            .try_get::<_, Option<f64>>(i)
            .map_err(read)?
            .map(Value::Real),
        "float4" => r
            .try_get::<_, Option<f32>>(i)
            .map_err(read)?
            .map(|f| Value::Real(f.into())),
        "text" | "varchar" | "bpchar" | "name" => r
            .try_get::<_, Option<String>>(i)
            .map_err(read)?
            .map(Value::Text),
        "bytea" => r
            .try_get::<_, Option<Vec<u8>>>(i)
            .map_err(read)?
            .map(Value::Blob),
        "void" => None,
        _ => {
            return Err(mismatch(format!(
                "column {i} is of type {ty}, which the store does not read"
            )));
        }
    };
    Ok(v.unwrap_or(Value::Null))
}

/// The rustls connector for `sslmode=verify-full`: the chain up to `root_cert`'s certificates,
/// the host name checked (rustls' default verifier), aws-lc-rs.
fn verifying_tls(root_cert: &Path) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let unusable = |why: String| {
        StoreError::Unavailable(format!("sslrootcert {}: {why}", root_cert.display()))
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(root_cert).map_err(|e| unusable(e.to_string()))? {
        let cert = cert.map_err(|e| unusable(e.to_string()))?;
        roots.add(cert).map_err(|e| unusable(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(unusable("holds no certificate".into()));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| unusable(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// Connects (on the driver's runtime) and hands the connection's I/O to it.
async fn open(target: PgTarget) -> Result<Client, StoreError> {
    let mut config = target.config().clone();
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(TCP_USER_TIMEOUT);
    }
    let refused = |e: tokio_postgres::Error| match classify(&e) {
        StoreError::Unavailable(m) => {
            StoreError::Unavailable(format!("cannot connect to {target}: {m}"))
        }
        other => other,
    };
    let client = match target.tls() {
        PgTls::Disable => {
            let (client, connection) = config.connect(NoTls).await.map_err(refused)?;
            tokio::spawn(drive(connection));
            client
        }
        PgTls::VerifyFull { root_cert } => {
            let tls = verifying_tls(root_cert)?;
            let (client, connection) = config.connect(tls).await.map_err(refused)?;
            tokio::spawn(drive(connection));
            client
        }
    };
    // Prepared statements are planned for their parameters every time (a generic plan of
    // `seq > $1` guesses a third of the audit log), and never in parallel: starting a worker
    // costs milliseconds, more than any statement of the store takes.
    client
        .batch_execute(
            "SET plan_cache_mode = force_custom_plan; SET max_parallel_workers_per_gather = 0",
        )
        .await
        .map_err(|e| classify(&e))?;
    Ok(client)
}

async fn drive<F>(connection: F)
where
    F: std::future::Future<Output = Result<(), tokio_postgres::Error>>,
{
    if let Err(e) = connection.await {
        tracing::warn!("PostgreSQL connection ended: {e}");
    }
}

/// [`open`], run on the driver's runtime, awaited from any async context.
async fn open_on_runtime(target: &PgTarget) -> Result<Client, StoreError> {
    runtime()?
        .spawn(open(target.clone()))
        .await
        .map_err(|e| StoreError::Unavailable(format!("the PostgreSQL driver's task failed: {e}")))?
}

impl PgConn {
    /// Connects to `target` (blocking; callable inside a tokio runtime or outside one).
    pub(crate) fn connect(target: &PgTarget) -> Result<Self, StoreError> {
        let client = futures_executor::block_on(open_on_runtime(target))?;
        Ok(Self {
            target: target.clone(),
            inner: Mutex::new(Inner {
                client: Some(Arc::new(client)),
                statements: HashMap::new(),
                tx: Tx::None,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The live client, `None` if one must be connected first, or the error if the open
    /// transaction's connection was lost.
    fn current(inner: &mut Inner) -> Result<Option<Arc<Client>>, StoreError> {
        match (&inner.client, inner.tx) {
            (_, Tx::Lost) => Err(lost_in_transaction()),
            (Some(c), _) if !c.is_closed() => Ok(Some(Arc::clone(c))),
            (_, tx) => {
                inner.client = None;
                inner.statements.clear();
                if tx == Tx::Open {
                    inner.tx = Tx::Lost;
                    return Err(lost_in_transaction());
                }
                Ok(None)
            }
        }
    }

    /// The live client, reconnecting (once) if the connection was lost outside a transaction.
    fn client(&self, inner: &mut Inner) -> Result<Arc<Client>, StoreError> {
        if let Some(c) = Self::current(inner)? {
            return Ok(c);
        }
        let c = Arc::new(futures_executor::block_on(open_on_runtime(&self.target))?);
        inner.client = Some(Arc::clone(&c));
        Ok(c)
    }

    /// Notes a failed statement: if it lost the connection, the transaction goes with it.
    fn failed(inner: &mut Inner, client: &Client) {
        if client.is_closed() {
            inner.client = None;
            inner.statements.clear();
            if inner.tx == Tx::Open {
                inner.tx = Tx::Lost;
            }
        }
    }

    /// `sql`'s prepared statement on `client`, from the cache when it was prepared before.
    fn statement(inner: &mut Inner, client: &Client, sql: &str) -> Result<Statement, StoreError> {
        if let Some(s) = inner.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = futures_executor::block_on(client.prepare(&placeholders(sql)))
            .map_err(|e| classify(&e))?;
        if inner.statements.len() >= STATEMENT_CACHE {
            inner.statements.clear();
        }
        inner.statements.insert(sql.to_owned(), s.clone());
        Ok(s)
    }

    /// Runs `f` with the live client, recording a lost connection if it fails.
    fn run<T>(
        &self,
        f: impl FnOnce(&mut Inner, &Client) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut inner = self.lock();
        let client = self.client(&mut inner)?;
        let result = f(&mut inner, &client);
        if result.is_err() {
            Self::failed(&mut inner, &client);
        }
        result
    }
}

fn as_params(bound: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    bound
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

impl Sql for PgConn {
    fn engine(&self) -> Engine {
        Engine::Postgres
    }

    fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
        self.run(|inner, client| {
            let stmt = Self::statement(inner, client, sql)?;
            let bound = bind(params, stmt.params())?;
            futures_executor::block_on(client.execute(&stmt, &as_params(&bound)))
                .map_err(|e| classify(&e))
        })
    }

    fn query_each(
        &self,
        sql: &str,
        params: &[Value],
        each: &mut dyn FnMut(Row) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.run(|inner, client| {
            let stmt = Self::statement(inner, client, sql)?;
            let bound = bind(params, stmt.params())?;
            futures_executor::block_on(async {
                let rows = client
                    .query_raw(&stmt, as_params(&bound))
                    .await
                    .map_err(|e| classify(&e))?;
                pin_mut!(rows);
                while let Some(row) = rows.next().await {
                    let row = row.map_err(|e| classify(&e))?;
                    each(read_row(&row)?)?;
                }
                Ok(())
            })
        })
    }

    fn batch(&self, sql: &str) -> Result<(), StoreError> {
        let effect = tx_effect(sql);
        let mut inner = self.lock();
        if effect == TxEffect::Rollback {
            let dead = inner.client.as_ref().is_none_or(|c| c.is_closed());
            if inner.tx == Tx::Lost || (inner.tx == Tx::Open && dead) {
                // The server rolled the transaction back when its connection went.
                inner.tx = Tx::None;
                if dead {
                    inner.client = None;
                    inner.statements.clear();
                }
                return Ok(());
            }
        }
        let client = self.client(&mut inner)?;
        let result =
            futures_executor::block_on(client.batch_execute(sql)).map_err(|e| classify(&e));
        let closed = client.is_closed();
        if result.is_err() {
            Self::failed(&mut inner, &client);
        }
        match effect {
            TxEffect::Begin if result.is_ok() => inner.tx = Tx::Open,
            TxEffect::Rollback => {
                // Whatever happened, no transaction is open any more (a lost connection
                // rolled it back).
                inner.tx = Tx::None;
                if closed {
                    return Ok(());
                }
            }
            TxEffect::Commit => {
                // A COMMIT that failed on a live connection ended the transaction too (rolled
                // back); one whose connection went is of unknown outcome, and the transaction
                // stays lost until the store's ROLLBACK.
                if result.is_ok() || !closed {
                    inner.tx = Tx::None;
                } else {
                    return Err(StoreError::Unavailable(
                        "the connection to PostgreSQL was lost during COMMIT: the transaction may or may not have been committed".into(),
                    ));
                }
            }
            _ => {}
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use std::sync::LazyLock;

    use cloister_tests::pg::PgCluster;

    use super::super::pg_schema::{self, SchemaState};
    use super::super::sql::{savepoint, transaction};
    use super::super::url::StoreUrl;
    use super::*;

    /// One cluster for this module's tests (each test makes its own database).
    static CLUSTER: LazyLock<Mutex<PgCluster>> = LazyLock::new(|| Mutex::new(PgCluster::start()));

    fn target(url: &str) -> PgTarget {
        match StoreUrl::parse(url).unwrap() {
            StoreUrl::Postgres(t) => *t,
            other => panic!("not postgres: {other}"),
        }
    }

    fn fresh(name: &str) -> PgConn {
        let url = CLUSTER
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .create_database(name);
        PgConn::connect(&target(&url)).unwrap()
    }

    #[test]
    fn placeholders_are_numbered_the_postgres_way() {
        assert_eq!(
            placeholders("SELECT ?1, ?12 FROM t WHERE a = ?2"),
            "SELECT $1, $12 FROM t WHERE a = $2"
        );
        assert_eq!(placeholders("SELECT '?1', ?1"), "SELECT '?1', $1");
        assert_eq!(
            placeholders("SELECT 'it''s ?3', ?3"),
            "SELECT 'it''s ?3', $3"
        );
        assert_eq!(placeholders("a ? b ?x"), "a ? b ?x");
    }

    #[test]
    fn transaction_statements_are_recognised() {
        assert_eq!(tx_effect("BEGIN"), TxEffect::Begin);
        assert_eq!(
            tx_effect("start transaction isolation level serializable"),
            TxEffect::Begin
        );
        assert_eq!(tx_effect("COMMIT"), TxEffect::Commit);
        assert_eq!(tx_effect("ROLLBACK"), TxEffect::Rollback);
        assert_eq!(
            tx_effect("ROLLBACK TO SAVEPOINT job; RELEASE SAVEPOINT job"),
            TxEffect::Nothing
        );
        assert_eq!(tx_effect("SAVEPOINT job"), TxEffect::Nothing);
        assert_eq!(tx_effect("CREATE TABLE t (a BIGINT)"), TxEffect::Nothing);
    }

    #[test]
    fn sqlstates_are_sorted_into_retryable_and_not() {
        for code in [
            "08006", "08001", "57P01", "57P02", "57P03", "53300", "40001", "40P01", "57014",
        ] {
            assert!(retryable(code), "{code}");
        }
        for code in ["23505", "42P01", "42804", "22003", "25P02"] {
            assert!(!retryable(code), "{code}");
        }
    }

    #[test]
    fn every_value_type_round_trips() {
        let conn = fresh("round_trip");
        conn.batch("CREATE TABLE t (i BIGINT, s TEXT, b BYTEA, n BIGINT, small INT, flag BOOLEAN)")
            .unwrap();
        let big: Vec<u8> = (0..4_000_000u32).map(|i| (i % 251) as u8).collect();
        for (i, s, b) in [
            (i64::MIN, "", vec![]),
            (i64::MAX, "é ünïcode ✓ with 'quotes' and ?1", big.clone()),
            (0, "x", vec![0, 255]),
        ] {
            let n = conn
                .execute(
                    "INSERT INTO t (i, s, b, n, small, flag) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    &[
                        Value::Integer(i),
                        Value::Text(s.into()),
                        Value::Blob(b),
                        Value::Null,
                        Value::Integer(7),
                        Value::Integer(1),
                    ],
                )
                .unwrap();
            assert_eq!(n, 1);
        }
        let rows = conn
            .query("SELECT i, s, b, n, small, flag FROM t ORDER BY i", &[])
            .unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[0].values()[..4],
            [
                Value::Integer(i64::MIN),
                Value::Text(String::new()),
                Value::Blob(vec![]),
                Value::Null
            ]
        );
        assert_eq!(
            rows[1].values()[..3],
            [
                Value::Integer(0),
                Value::Text("x".into()),
                Value::Blob(vec![0, 255])
            ]
        );
        assert_eq!(rows[2].get::<i64>(0).unwrap(), i64::MAX);
        assert_eq!(rows[2].get::<Vec<u8>>(2).unwrap(), big);
        assert_eq!(
            rows[2].values()[4..],
            [Value::Integer(7), Value::Integer(1)]
        );
        // NULL binds to any column type.
        conn.execute(
            "UPDATE t SET s = ?1, b = ?2, small = ?3 WHERE i = ?4",
            &[Value::Null, Value::Null, Value::Null, Value::Integer(0)],
        )
        .unwrap();
        let row = conn
            .query_one(
                "SELECT s, b, small FROM t WHERE i = ?1",
                &[Value::Integer(0)],
            )
            .unwrap();
        assert_eq!(row.values(), [Value::Null, Value::Null, Value::Null]);
        // A value of the wrong type, or too many parameters, is refused before it is sent.
        let e = conn
            .execute("INSERT INTO t (i) VALUES (?1)", &[Value::Text("1".into())])
            .unwrap_err();
        assert!(
            matches!(&e, StoreError::Postgres { code, .. } if code == "42804"),
            "{e}"
        );
        let e = conn
            .execute(
                "INSERT INTO t (small) VALUES (?1)",
                &[Value::Integer(1 << 40)],
            )
            .unwrap_err();
        assert!(e.to_string().contains("out of range"), "{e}");
        let e = conn
            .execute(
                "INSERT INTO t (i) VALUES (?1)",
                &[Value::Integer(1), Value::Integer(2)],
            )
            .unwrap_err();
        assert!(e.to_string().contains("takes 1 parameters"), "{e}");
        // query_each streams and stops at the first error.
        let mut seen = 0;
        let e = conn
            .query_each("SELECT i FROM t ORDER BY i", &[], &mut |_| {
                seen += 1;
                Err(StoreError::Corrupt("stop"))
            })
            .unwrap_err();
        assert_eq!((seen, e.to_string()), (1, "stop".to_string()));
        // A statement error keeps its SQLSTATE and is not retryable; the connection goes on.
        let e = conn
            .execute("INSERT INTO nowhere VALUES (?1)", &[Value::Integer(1)])
            .unwrap_err();
        assert!(
            matches!(&e, StoreError::Postgres { code, .. } if code == "42P01"),
            "{e}"
        );
        assert_eq!(conn.query("SELECT i FROM t", &[]).unwrap().len(), 3);
    }

    #[test]
    fn a_failed_savepoint_undoes_only_itself_and_a_failed_transaction_everything() {
        let conn = fresh("savepoints");
        let sql: &dyn Sql = &conn;
        sql.batch("CREATE TABLE t (a BIGINT PRIMARY KEY, b TEXT)")
            .unwrap();
        transaction(sql, |tx| {
            tx.execute(
                "INSERT INTO t VALUES (?1, ?2)",
                &[Value::Integer(1), Value::Text("x".into())],
            )?;
            let failed: Result<(), StoreError> = savepoint(tx, |sp| {
                sp.execute("INSERT INTO t VALUES (?1, NULL)", &[Value::Integer(2)])?;
                Err(StoreError::Corrupt("no"))
            });
            assert!(failed.is_err());
            // A statement that fails inside a savepoint does not poison the transaction.
            let failed: Result<(), StoreError> = savepoint(tx, |sp| {
                sp.execute("INSERT INTO t VALUES (?1, NULL)", &[Value::Integer(1)])?;
                Ok(())
            });
            assert!(
                matches!(failed, Err(StoreError::Postgres { ref code, .. }) if code == "23505")
            );
            Ok::<_, StoreError>(())
        })
        .unwrap();
        let rows = sql.query("SELECT a, b FROM t ORDER BY a", &[]).unwrap();
        assert_eq!(
            rows,
            vec![Row(vec![Value::Integer(1), Value::Text("x".into())])]
        );
        let failed: Result<(), StoreError> = transaction(sql, |tx| {
            tx.execute("DELETE FROM t", &[])?;
            Err(StoreError::Corrupt("no"))
        });
        assert!(failed.is_err());
        assert_eq!(sql.query("SELECT a FROM t", &[]).unwrap().len(), 1);
        assert_eq!(conn.lock().tx, Tx::None);
    }

    #[test]
    fn migrate_creates_the_schema_once_even_when_two_nodes_race() {
        let url = CLUSTER
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .create_database("migrate");
        let t = target(&url);
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let t = t.clone();
                std::thread::spawn(move || {
                    pg_schema::migrate(&PgConn::connect(&t).unwrap()).unwrap()
                })
            })
            .collect();
        let mut states: Vec<SchemaState> = threads.into_iter().map(|h| h.join().unwrap()).collect();
        states.sort_by_key(|s| format!("{s:?}"));
        assert_eq!(
            states,
            vec![SchemaState::Empty, SchemaState::Version(pg_schema::VERSION)]
        );
        let conn = PgConn::connect(&t).unwrap();
        assert_eq!(
            pg_schema::migrate(&conn).unwrap(),
            SchemaState::Version(pg_schema::VERSION)
        );
        let versions = conn.query("SELECT version FROM kms_schema", &[]).unwrap();
        assert_eq!(
            versions,
            vec![Row(vec![Value::Integer(pg_schema::VERSION)])]
        );
        // Every table of SQLite's version 3, same columns in the same order.
        let columns = conn
            .query(
                "SELECT table_name, string_agg(column_name || ':' || data_type, ',' ORDER BY ordinal_position) \
                 FROM information_schema.columns WHERE table_schema = 'public' GROUP BY table_name ORDER BY table_name",
                &[],
            )
            .unwrap();
        let got: Vec<(String, String)> = columns
            .iter()
            .map(|r| (r.get(0).unwrap(), r.get(1).unwrap()))
            .collect();
        let expected = [
            (
                "aliases",
                "name:text,key_id:text,created_ms:bigint,updated_ms:bigint,mac:bytea",
            ),
            (
                "audit",
                "seq:bigint,entry:text,prev_hash:text,hash:text,leaf_hash:bytea,mac:bytea",
            ),
            (
                "audit_frontier",
                "id:bigint,tree_size:bigint,frontier:bytea",
            ),
            (
                "grants",
                "grant_id:text,key_id:text,body:text,created_ms:bigint,mac:bytea",
            ),
            (
                "key_material",
                "key_id:text,version:bigint,sealed:bytea,created_ms:bigint",
            ),
            (
                "keys",
                "key_id:text,description:text,created_ms:bigint,state:text,deletion_ms:bigint,pending_days:bigint,rotation_enabled:bigint,rotation_period_days:bigint,last_rotation_ms:bigint,current_version:bigint,policy:text,mac:bytea,attrs:text",
            ),
            ("kms_schema", "version:bigint"),
            ("meta", "name:text,value:bytea"),
            ("parameters", "arn:text,body:text,mac:bytea"),
            (
                "principals",
                "access_key_id:text,sealed_secret:bytea,arn:text,created_ms:bigint,mac:bytea",
            ),
            (
                "secret_versions",
                "arn:text,version_id:text,created_ms:bigint,sealed:bytea,mac:bytea",
            ),
            ("secrets", "arn:text,body:text,mac:bytea"),
            (
                "tree_heads",
                "tree_size:bigint,root_hash:bytea,timestamp_ms:bigint,signature:bytea",
            ),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        // Version 3's tables exactly (later versions add tables of their own).
        let got: Vec<(String, String)> = got
            .into_iter()
            .filter(|(t, _)| expected.iter().any(|(e, _)| e == t))
            .collect();
        assert_eq!(got, expected);
        // A version from the future is refused, and nothing is changed.
        conn.execute(
            "UPDATE kms_schema SET version = ?1",
            &[Value::Integer(pg_schema::VERSION + 100)],
        )
        .unwrap();
        let e = pg_schema::migrate(&conn).unwrap_err();
        assert!(
            e.to_string().contains("newer than this cloister-kms"),
            "{e}"
        );
        assert_eq!(
            conn.query_one("SELECT version FROM kms_schema", &[])
                .unwrap()
                .get::<i64>(0)
                .unwrap(),
            pg_schema::VERSION + 100
        );
    }

    #[test]
    fn a_lost_connection_is_unavailable_and_comes_back_by_itself() {
        // Its own cluster: this test stops it.
        let mut cluster = PgCluster::start();
        let url = cluster.create_database("lost");
        let conn = PgConn::connect(&target(&url)).unwrap();
        let admin = PgConn::connect(&target(&url)).unwrap();
        conn.batch("CREATE TABLE t (a BIGINT)").unwrap();
        let pid = |c: &PgConn| {
            c.query_one("SELECT pg_backend_pid()", &[])
                .unwrap()
                .get::<i64>(0)
                .unwrap()
        };
        let kill = |victim: i64| {
            admin
                .query(
                    "SELECT pg_terminate_backend(?1::int4)",
                    &[Value::Integer(victim)],
                )
                .unwrap();
            // Wait until the victim's backend is gone.
            for _ in 0..200 {
                let n = admin
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE pid = ?1::int4",
                        &[Value::Integer(victim)],
                    )
                    .unwrap();
                if n.get::<i64>(0).unwrap() == 0 {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            panic!("backend {victim} did not go");
        };

        // Outside a transaction: this statement fails (or reconnects), the next one works.
        kill(pid(&conn));
        std::thread::sleep(Duration::from_millis(100));
        match conn.execute("INSERT INTO t VALUES (1)", &[]) {
            Ok(_) => {}
            Err(StoreError::Unavailable(_)) => {
                conn.execute("INSERT INTO t VALUES (1)", &[]).unwrap();
            }
            Err(e) => panic!("{e}"),
        }

        // Inside a transaction: unavailable until ROLLBACK, then it works again; the
        // transaction's write is gone.
        conn.batch("BEGIN").unwrap();
        conn.execute("INSERT INTO t VALUES (2)", &[]).unwrap();
        kill(pid(&conn));
        std::thread::sleep(Duration::from_millis(100));
        for _ in 0..2 {
            let e = conn.execute("INSERT INTO t VALUES (3)", &[]).unwrap_err();
            assert!(matches!(e, StoreError::Unavailable(_)), "{e}");
        }
        assert!(matches!(
            conn.batch("COMMIT").unwrap_err(),
            StoreError::Unavailable(_)
        ));
        conn.batch("ROLLBACK").unwrap();
        let rows = conn.query("SELECT a FROM t ORDER BY a", &[]).unwrap();
        assert_eq!(rows, vec![Row(vec![Value::Integer(1)])]);

        // A connection lost with nothing sent since: ROLLBACK is all it takes.
        conn.batch("BEGIN").unwrap();
        conn.execute("INSERT INTO t VALUES (4)", &[]).unwrap();
        kill(pid(&conn));
        std::thread::sleep(Duration::from_millis(100));
        conn.batch("ROLLBACK").unwrap();
        assert_eq!(conn.query("SELECT a FROM t", &[]).unwrap().len(), 1);

        // The whole cluster down: unavailable; back: the same PgConn works.
        drop(admin);
        cluster.stop();
        let e = conn.query("SELECT a FROM t", &[]).unwrap_err();
        assert!(matches!(e, StoreError::Unavailable(_)), "{e}");
        let e = conn.query("SELECT a FROM t", &[]).unwrap_err();
        assert!(
            matches!(e, StoreError::Unavailable(ref m) if m.contains("cannot connect")),
            "{e}"
        );
        cluster.start_again();

        assert_eq!(conn.query("SELECT a FROM t", &[]).unwrap().len(), 1);
    }

    #[test]
    fn committed_rows_survive_a_kill_9_of_the_database() {
        let mut cluster = PgCluster::start();
        let url = cluster.create_database("crash");
        let conn = PgConn::connect(&target(&url)).unwrap();
        conn.batch("CREATE TABLE t (a BIGINT)").unwrap();
        for i in 0..50 {
            transaction(&conn, |tx| {
                tx.execute("INSERT INTO t VALUES (?1)", &[Value::Integer(i)])
            })
            .unwrap();
        }
        conn.batch("BEGIN").unwrap();
        conn.execute("INSERT INTO t VALUES (1000)", &[]).unwrap();
        cluster.kill();
        let e = conn.batch("COMMIT").unwrap_err();
        assert!(matches!(e, StoreError::Unavailable(_)), "{e}");
        conn.batch("ROLLBACK").unwrap();
        cluster.start_again();
        let n = conn
            .query_one("SELECT count(*), max(a) FROM t", &[])
            .unwrap();
        assert_eq!(n.values(), [Value::Integer(50), Value::Integer(49)]);
    }

    #[test]
    fn the_blocking_api_works_inside_a_runtime() {
        let conn = fresh("in_runtime");
        conn.batch("CREATE TABLE t (a BIGINT, b TEXT); INSERT INTO t VALUES (1, 'one')")
            .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let rows = rt
            .block_on(async { conn.query("SELECT b FROM t WHERE a = ?1", &[Value::Integer(1)]) })
            .unwrap();
        assert_eq!(rows, vec![Row(vec![Value::Text("one".into())])]);
    }

    #[test]
    fn tls_verifies_the_server_against_the_given_ca() {
        let cluster = PgCluster::start_tls();
        let ca = cluster.ca_path().unwrap().to_owned();
        let plain = cluster.create_database("tls");
        // The server's certificate names localhost only.
        let by_ip = plain.split('?').next().unwrap().to_owned();
        let by_name = by_ip.replace("127.0.0.1", "localhost");
        let url = format!("{by_name}?sslmode=verify-full&sslrootcert={}", ca.display());
        let conn = PgConn::connect(&target(&url)).unwrap();
        let row = conn
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .unwrap();
        assert_eq!(row.get::<i64>(0).unwrap(), 1);

        // Another CA: refused, and the error says why.
        let other = PgCluster::make_ca(&cluster.dir().join("other-ca"));
        let url = format!(
            "{by_name}?sslmode=verify-full&sslrootcert={}",
            other.display()
        );
        let e = PgConn::connect(&target(&url)).unwrap_err().to_string();
        assert!(e.contains("invalid peer certificate"), "{e}");
        // A name the certificate does not carry: refused.
        let url = format!("{by_ip}?sslmode=verify-full&sslrootcert={}", ca.display());
        let e = PgConn::connect(&target(&url)).unwrap_err().to_string();
        assert!(e.contains("not valid for name \"127.0.0.1\""), "{e}");
    }
}
