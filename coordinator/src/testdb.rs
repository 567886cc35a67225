//! Helpers for tests that run against a real PostgreSQL server.

use sqlx::Connection;

/// Create an empty database on the server `base_url` points at and return a
/// URL for it, so each test gets its own schema.
pub async fn fresh_postgres_database(base_url: &str) -> Result<String, sqlx::Error> {
    let name = format!("picket_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::postgres::PgConnection::connect(base_url).await?;
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await?;
    conn.close().await?;
    let (prefix, query) = match base_url.split_once('?') {
        Some((p, q)) => (p, format!("?{q}")),
        None => (base_url, String::new()),
    };
    let root = match prefix.rfind('/') {
        Some(i) if i > "postgres://".len() => &prefix[..i],
        _ => prefix,
    };
    Ok(format!("{root}/{name}{query}"))
}
