//! The store's SQL, engine-neutral: what every statement of the store runs through, so one
//! store serves over SQLite (the embedded default, `sqlite.rs`) and PostgreSQL (shared by
//! several nodes, `pg.rs`).
//!
//! Statements are written once, in the SQL both engines read: `?1`-style placeholders (the
//! PostgreSQL engine numbers them `$1`), `INSERT ... ON CONFLICT (...) DO UPDATE`, `SAVEPOINT`.
//! Values are SQLite's five types ([`Value`]), which the row MACs encode (`integrity.rs`): the
//! PostgreSQL schema uses `BIGINT`, `TEXT` and `BYTEA`, so a row reads back as the same values on
//! either engine and its MAC verifies on both. Only the schema and its migrations differ
//! (`schema.rs`, `pg_schema.rs`).

pub(crate) use rusqlite::types::Value;

use crate::error::StoreError;

/// Which engine a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Engine {
    /// One SQLite file, written by one process (the data directory's lock).
    Sqlite,
    /// A PostgreSQL database, shared by every node of the service.
    Postgres,
}

/// One row of a result, in the statement's column order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row(pub(crate) Vec<Value>);

impl Row {
    /// Column `i`'s value.
    pub(crate) fn value(&self, i: usize) -> Result<&Value, StoreError> {
        self.0
            .get(i)
            .ok_or(StoreError::Corrupt("a column is missing"))
    }

    /// Column `i`, as `T`.
    pub(crate) fn get<T: FromValue>(&self, i: usize) -> Result<T, StoreError> {
        T::from_value(self.value(i)?)
    }

    /// Every column.
    pub(crate) fn values(&self) -> &[Value] {
        &self.0
    }
}

/// A Rust type a column reads as.
pub(crate) trait FromValue: Sized {
    /// `v` as `Self`, or a store error naming what was wrong.
    fn from_value(v: &Value) -> Result<Self, StoreError>;
}

impl FromValue for i64 {
    fn from_value(v: &Value) -> Result<Self, StoreError> {
        match v {
            Value::Integer(i) => Ok(*i),
            _ => Err(StoreError::Corrupt("an integer column holds another type")),
        }
    }
}

impl FromValue for u32 {
    fn from_value(v: &Value) -> Result<Self, StoreError> {
        u32::try_from(i64::from_value(v)?)
            .map_err(|_| StoreError::Corrupt("an integer column is out of range"))
    }
}

impl FromValue for u64 {
    fn from_value(v: &Value) -> Result<Self, StoreError> {
        u64::try_from(i64::from_value(v)?)
            .map_err(|_| StoreError::Corrupt("an integer column is out of range"))
    }
}

impl FromValue for bool {
    fn from_value(v: &Value) -> Result<Self, StoreError> {
        Ok(i64::from_value(v)? != 0)
    }
}

impl FromValue for String {
    fn from_value(v: &Value) -> Result<Self, StoreError> {
        match v {
            Value::Text(t) => Ok(t.clone()),
            _ => Err(StoreError::Corrupt("a text column holds another type")),
        }
    }
}

impl FromValue for Vec<u8> {
    fn from_value(v: &Value) -> Result<Self, StoreError> {
        match v {
            Value::Blob(b) => Ok(b.clone()),
            _ => Err(StoreError::Corrupt("a blob column holds another type")),
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> Result<Self, StoreError> {
        match v {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}

/// A value bound to a statement.
pub(crate) fn int(i: impl Into<i64>) -> Value {
    Value::Integer(i.into())
}

/// A text value bound to a statement.
pub(crate) fn text(t: impl Into<String>) -> Value {
    Value::Text(t.into())
}

/// A connection to the store's database. Statements run in autocommit unless the caller ran
/// `BEGIN` ([`Sql::batch`]); savepoints nest inside.
pub(crate) trait Sql: Send {
    /// Which engine.
    fn engine(&self) -> Engine;

    /// Runs one statement; how many rows it changed.
    fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, StoreError>;

    /// Runs one query, handing each row to `each` as it is read (for the audit log, which may
    /// not fit in memory); stops at the first error `each` returns.
    fn query_each(
        &self,
        sql: &str,
        params: &[Value],
        each: &mut dyn FnMut(Row) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;

    /// Runs one query; every row it returns.
    fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        let mut out = Vec::new();
        self.query_each(sql, params, &mut |r| {
            out.push(r);
            Ok(())
        })?;
        Ok(out)
    }

    /// Runs statements without parameters, separated by `;` (DDL, `BEGIN`, `COMMIT`).
    fn batch(&self, sql: &str) -> Result<(), StoreError>;

    /// The SQLite connection, if this is one (tests reach behind a SQLite store with it).
    #[cfg(test)]
    fn as_sqlite(&self) -> Option<&rusqlite::Connection> {
        None
    }

    /// The one row `sql` returns, if any.
    fn query_opt(&self, sql: &str, params: &[Value]) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// The one row `sql` must return.
    fn query_one(&self, sql: &str, params: &[Value]) -> Result<Row, StoreError> {
        self.query_opt(sql, params)?.ok_or(StoreError::Corrupt(
            "a query that returns one row returned none",
        ))
    }
}

/// Runs `f` inside a transaction on `conn`: committed if it returns `Ok`, rolled back if not.
/// A commit that fails rolls back and is the error.
pub(crate) fn transaction<T, E>(
    conn: &dyn Sql,
    f: impl FnOnce(&dyn Sql) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<StoreError>,
{
    conn.batch("BEGIN")?;
    match f(conn) {
        Ok(v) => match conn.batch("COMMIT") {
            Ok(()) => Ok(v),
            Err(e) => {
                let _ = conn.batch("ROLLBACK");
                Err(e.into())
            }
        },
        Err(e) => {
            let _ = conn.batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Runs `f` inside a savepoint (in the caller's transaction): released if it returns `Ok`,
/// rolled back to (its changes undone, the transaction kept) if not.
pub(crate) fn savepoint<T, E>(
    conn: &dyn Sql,
    f: impl FnOnce(&dyn Sql) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<StoreError>,
{
    conn.batch("SAVEPOINT job")?;
    match f(conn) {
        Ok(v) => {
            conn.batch("RELEASE SAVEPOINT job")?;
            Ok(v)
        }
        Err(e) => {
            conn.batch("ROLLBACK TO SAVEPOINT job; RELEASE SAVEPOINT job")?;
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_read_as_their_types_and_refuse_others() {
        let row = Row(vec![
            Value::Integer(7),
            Value::Text("t".into()),
            Value::Blob(vec![1]),
            Value::Null,
        ]);
        assert_eq!(row.get::<i64>(0).unwrap(), 7);
        assert_eq!(row.get::<u32>(0).unwrap(), 7);
        assert_eq!(row.get::<String>(1).unwrap(), "t");
        assert_eq!(row.get::<Vec<u8>>(2).unwrap(), vec![1]);
        assert_eq!(row.get::<Option<i64>>(3).unwrap(), None);
        assert!(row.get::<i64>(1).is_err());
        assert!(row.get::<String>(2).is_err());
        assert!(row.get::<i64>(9).is_err());
        assert!(Row(vec![Value::Integer(-1)]).get::<u32>(0).is_err());
    }
}
