//! The two databases behind one small interface, [`Backend`]: SQL text is shared (parameters are `$1`,
//! `$2`… in order of first use, which both SQLite and PostgreSQL read), values are [`Value`]s, and the
//! only per-database code is opening, the transaction's start and the bulk insert (one prepared
//! statement in SQLite, `COPY` in PostgreSQL).

use std::time::Duration;

pub(crate) type DbError = Box<dyn std::error::Error + Send + Sync>;

/// A typed, nullable SQL value. PostgreSQL checks a parameter's type even when it is NULL, so a NULL
/// keeps its type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Int(Option<i64>),
    Real(Option<f64>),
    Text(Option<String>),
}

impl Value {
    pub(crate) fn int(&self) -> Option<i64> {
        match self {
            Value::Int(v) => *v,
            Value::Real(v) => v.map(|f| f as i64),
            Value::Text(_) => None,
        }
    }

    pub(crate) fn text(&self) -> Option<&str> {
        match self {
            Value::Text(v) => v.as_deref(),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

pub(crate) trait Backend {
    fn dialect(&self) -> Dialect;
    /// Statements without parameters or results (DDL, transaction control).
    fn batch(&mut self, sql: &str) -> Result<(), DbError>;
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError>;
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Vec<Value>>, DbError>;
    /// Inserts many rows of `columns` into `table`, inside the caller's transaction.
    fn insert_rows(
        &mut self,
        table: &str,
        columns: &[&str],
        rows: &mut dyn Iterator<Item = Vec<Value>>,
    ) -> Result<u64, DbError>;
    /// Starts a write transaction that holds the write lock from its start (SQLite's `IMMEDIATE`: a
    /// reader upgraded to a writer mid-transaction would fail at once instead of waiting its turn).
    fn begin_write(&mut self) -> Result<(), DbError> {
        self.batch("BEGIN")
    }
}

pub(crate) struct Sqlite {
    conn: rusqlite::Connection,
}

impl Sqlite {
    /// Opens (creating it when `create`) a database file in WAL mode, waiting up to `busy` for a
    /// lock another process holds.
    pub(crate) fn open(
        path: &std::path::Path,
        create: bool,
        busy: Duration,
    ) -> Result<Sqlite, DbError> {
        use rusqlite::OpenFlags;
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        if create {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let conn = rusqlite::Connection::open_with_flags(path, flags)?;
        conn.busy_timeout(busy)?;
        // WAL: readers never block the writer and the writer never blocks readers; NORMAL sync is safe
        // against corruption in WAL mode (a power cut may lose the last run, never the file). Switching
        // a new file to WAL takes an exclusive lock, and SQLite answers BUSY at once, without its busy
        // handler, while another process creates or recovers the same file: that is retried here, up to
        // the same `busy` wait.
        let deadline = std::time::Instant::now() + busy;
        let mode: String = loop {
            match conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)) {
                Err(e) if is_busy(&e) && std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => break other?,
            }
        };
        if !mode.eq_ignore_ascii_case("wal") && !mode.eq_ignore_ascii_case("memory") {
            return Err(format!("cannot switch to WAL mode (journal_mode is {mode})").into());
        }
        conn.execute_batch("PRAGMA synchronous=NORMAL")?;
        Ok(Sqlite { conn })
    }
}

/// SQLite's "another connection holds the lock" answers.
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn to_sqlite(v: &Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as S;
    match v {
        Value::Int(Some(i)) => S::Integer(*i),
        Value::Real(Some(f)) => S::Real(*f),
        Value::Text(Some(t)) => S::Text(t.clone()),
        _ => S::Null,
    }
}

fn from_sqlite(v: rusqlite::types::ValueRef<'_>) -> Value {
    use rusqlite::types::ValueRef as S;
    match v {
        S::Null => Value::Text(None),
        S::Integer(i) => Value::Int(Some(i)),
        S::Real(f) => Value::Real(Some(f)),
        S::Text(t) | S::Blob(t) => Value::Text(Some(String::from_utf8_lossy(t).into_owned())),
    }
}

impl Backend for Sqlite {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        Ok(self.conn.execute_batch(sql)?)
    }

    fn begin_write(&mut self) -> Result<(), DbError> {
        self.batch("BEGIN IMMEDIATE")
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        let params: Vec<_> = params.iter().map(to_sqlite).collect();
        let mut stmt = self.conn.prepare_cached(sql)?;
        Ok(stmt.execute(rusqlite::params_from_iter(params))? as u64)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Vec<Value>>, DbError> {
        let params: Vec<_> = params.iter().map(to_sqlite).collect();
        let mut stmt = self.conn.prepare_cached(sql)?;
        let n = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let mut values = Vec::with_capacity(n);
            for i in 0..n {
                values.push(from_sqlite(row.get_ref(i)?));
            }
            out.push(values);
        }
        Ok(out)
    }

    fn insert_rows(
        &mut self,
        table: &str,
        columns: &[&str],
        rows: &mut dyn Iterator<Item = Vec<Value>>,
    ) -> Result<u64, DbError> {
        let marks: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
        let sql = format!(
            "INSERT INTO {table} ({}) VALUES ({})",
            columns.join(", "),
            marks.join(", ")
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut n = 0;
        for row in rows {
            let params: Vec<_> = row.iter().map(to_sqlite).collect();
            stmt.execute(rusqlite::params_from_iter(params))?;
            n += 1;
        }
        Ok(n)
    }
}

pub(crate) struct Postgres {
    client: postgres::Client,
}

impl Postgres {
    /// Connects without TLS, giving up after `timeout` (an unreachable server must not hold up a run);
    /// statements are cancelled after `statement_timeout`, when given.
    pub(crate) fn connect(
        url: &str,
        timeout: Duration,
        statement_timeout: Option<Duration>,
    ) -> Result<Postgres, DbError> {
        let mut config: postgres::Config = url.parse()?;
        config.connect_timeout(timeout);
        config.application_name("smart-rerun");
        if let Some(t) = statement_timeout {
            config.options(&format!("-c statement_timeout={}", t.as_millis().max(1)));
        }
        let client = config.connect(postgres::NoTls)?;
        let mut pg = Postgres { client };
        // Warnings such as "relation already exists, skipping" are for people at a psql prompt.
        pg.batch("SET client_min_messages = warning")?;
        Ok(pg)
    }
}

fn pg_params(params: &[Value]) -> Vec<Box<dyn postgres::types::ToSql + Sync>> {
    params
        .iter()
        .map(|v| -> Box<dyn postgres::types::ToSql + Sync> {
            match v {
                Value::Int(i) => Box::new(*i),
                Value::Real(f) => Box::new(*f),
                Value::Text(t) => Box::new(t.clone()),
            }
        })
        .collect()
}

fn from_pg(row: &postgres::Row, i: usize) -> Result<Value, DbError> {
    use postgres::types::Type;
    let ty = row.columns()[i].type_();
    Ok(if *ty == Type::INT8 {
        Value::Int(row.try_get::<_, Option<i64>>(i)?)
    } else if *ty == Type::INT4 {
        Value::Int(row.try_get::<_, Option<i32>>(i)?.map(i64::from))
    } else if *ty == Type::INT2 {
        Value::Int(row.try_get::<_, Option<i16>>(i)?.map(i64::from))
    } else if *ty == Type::FLOAT8 {
        Value::Real(row.try_get::<_, Option<f64>>(i)?)
    } else if *ty == Type::FLOAT4 {
        Value::Real(row.try_get::<_, Option<f32>>(i)?.map(f64::from))
    } else if *ty == Type::VOID {
        Value::Text(None)
    } else if *ty == Type::BOOL {
        Value::Int(row.try_get::<_, Option<bool>>(i)?.map(i64::from))
    } else {
        Value::Text(row.try_get::<_, Option<String>>(i)?)
    })
}

impl Backend for Postgres {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        Ok(self.client.batch_execute(sql)?)
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        let boxed = pg_params(params);
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
            boxed.iter().map(|b| b.as_ref()).collect();
        Ok(self.client.execute(sql, &refs)?)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Vec<Value>>, DbError> {
        let boxed = pg_params(params);
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
            boxed.iter().map(|b| b.as_ref()).collect();
        let rows = self.client.query(sql, &refs)?;
        rows.iter()
            .map(|row| (0..row.len()).map(|i| from_pg(row, i)).collect())
            .collect()
    }

    fn insert_rows(
        &mut self,
        table: &str,
        columns: &[&str],
        rows: &mut dyn Iterator<Item = Vec<Value>>,
    ) -> Result<u64, DbError> {
        use std::io::Write;
        let sql = format!("COPY {table} ({}) FROM STDIN", columns.join(", "));
        let mut writer = self.client.copy_in(&sql)?;
        let mut line = String::new();
        for row in rows {
            line.clear();
            for (i, v) in row.iter().enumerate() {
                if i > 0 {
                    line.push('\t');
                }
                copy_field(&mut line, v);
            }
            line.push('\n');
            writer.write_all(line.as_bytes())?;
        }
        Ok(writer.finish()?)
    }
}

/// One field of `COPY`'s text format: `\N` for NULL, backslash escapes for the separators.
fn copy_field(out: &mut String, v: &Value) {
    match v {
        Value::Int(Some(i)) => out.push_str(&i.to_string()),
        Value::Real(Some(f)) => out.push_str(&format!("{f:?}")),
        Value::Text(Some(t)) => {
            for c in t.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\t' => out.push_str("\\t"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    // PostgreSQL text cannot hold NUL.
                    '\0' => out.push_str("\\\\0"),
                    c => out.push(c),
                }
            }
        }
        _ => out.push_str("\\N"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_fields_escape_separators_and_keep_nulls_typed() {
        let mut s = String::new();
        copy_field(&mut s, &Value::Text(Some("a\tb\\c\nd [x]".into())));
        assert_eq!(s, "a\\tb\\\\c\\nd [x]");
        s.clear();
        copy_field(&mut s, &Value::Int(None));
        assert_eq!(s, "\\N");
        s.clear();
        copy_field(&mut s, &Value::Real(Some(1.0)));
        assert_eq!(s, "1.0");
    }
}
