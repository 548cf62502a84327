//! The SQLite engine: [`Sql`] over a `rusqlite` connection to the store's file (WAL,
//! `synchronous=FULL`: a commit is on disk when it returns). One process writes it: the data
//! directory's lock (`cloister-kms serve`) keeps a second server out.

use rusqlite::Connection;
use rusqlite::types::Value;

use super::sql::{Engine, Row, Sql};
use crate::error::StoreError;

fn params(params: &[Value]) -> rusqlite::ParamsFromIter<std::slice::Iter<'_, Value>> {
    rusqlite::params_from_iter(params.iter())
}

fn row(r: &rusqlite::Row<'_>, n: usize) -> rusqlite::Result<Row> {
    (0..n)
        .map(|i| r.get::<_, Value>(i))
        .collect::<rusqlite::Result<Vec<_>>>()
        .map(Row)
}

impl Sql for Connection {
    fn engine(&self) -> Engine {
        Engine::Sqlite
    }

    fn execute(&self, sql: &str, p: &[Value]) -> Result<u64, StoreError> {
        let n = self.prepare_cached(sql)?.execute(params(p))?;
        Ok(n as u64)
    }

    fn query_each(
        &self,
        sql: &str,
        p: &[Value],
        each: &mut dyn FnMut(Row) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut stmt = self.prepare_cached(sql)?;
        let n = stmt.column_count();
        let mut rows = stmt.query(params(p))?;
        while let Some(r) = rows.next()? {
            each(row(r, n)?)?;
        }
        Ok(())
    }

    fn batch(&self, sql: &str) -> Result<(), StoreError> {
        Ok(self.execute_batch(sql)?)
    }

    #[cfg(test)]
    fn as_sqlite(&self) -> Option<&rusqlite::Connection> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sql::{savepoint, transaction};

    #[test]
    fn a_failed_savepoint_undoes_only_itself_and_a_failed_transaction_everything() {
        let conn = Connection::open_in_memory().unwrap();
        let sql: &dyn Sql = &conn;
        sql.batch("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT)")
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
    }
}
