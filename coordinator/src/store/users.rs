//! Named users and their console sessions. Passwords arrive here already
//! hashed (Argon2id, see `crate::users`); sessions are keyed by the SHA-256
//! of their cookie.

use sqlx::Row;

use super::{Role, Store, StoreError};
use crate::clock::now_ms;

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct User {
    pub name: String,
    pub role: Role,
    pub created_by: String,
    pub created_at: i64,
    pub password_changed_at: i64,
    pub disabled_at: Option<i64>,
}

/// A live console session and the user behind it.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: String,
    pub role: Role,
    pub csrf_token: String,
    pub created_at: i64,
    pub last_seen_at: i64,
}

const USER_COLUMNS: &str = "name, role, created_by, created_at, password_changed_at, disabled_at";

fn role_of(row: &sqlx::any::AnyRow, table: &'static str) -> Result<Role, StoreError> {
    let role: String = row.try_get("role")?;
    Role::parse(&role).ok_or_else(|| StoreError::corrupt(table, format!("role {role:?}")))
}

fn user_from_row(row: &sqlx::any::AnyRow) -> Result<User, StoreError> {
    Ok(User {
        name: row.try_get("name")?,
        role: role_of(row, "users")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        password_changed_at: row.try_get("password_changed_at")?,
        disabled_at: row.try_get("disabled_at")?,
    })
}

impl Store {
    /// Adds a user; false when the name is taken.
    pub async fn create_user(
        &self,
        name: &str,
        role: Role,
        password_hash: &str,
        created_by: &str,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let done = sqlx::query(
            "INSERT INTO users (name, role, password_hash, created_by, created_at, password_changed_at) \
             VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(role.as_str())
        .bind(password_hash)
        .bind(created_by)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn user_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM users").fetch_one(&self.pool).await?.try_get("n")?)
    }

    /// Every user, by name.
    pub async fn users(&self) -> Result<Vec<User>, StoreError> {
        let rows =
            sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY name")).fetch_all(&self.pool).await?;
        rows.iter().map(user_from_row).collect()
    }

    /// The user `name` and their password hash.
    pub async fn user(&self, name: &str) -> Result<Option<(User, String)>, StoreError> {
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS}, password_hash FROM users WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((user_from_row(&r)?, r.try_get("password_hash")?))).transpose()
    }

    /// Replaces the password hash and ends every session of the user, in
    /// one transaction; false when there is no such user.
    pub async fn set_password(&self, name: &str, password_hash: &str) -> Result<bool, StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("UPDATE users SET password_hash = $1, password_changed_at = $2 WHERE name = $3")
            .bind(password_hash)
            .bind(now)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        end_sessions(&mut tx, name, now).await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Disables (ending every session) or enables the user; false when
    /// there is no such user.
    pub async fn set_user_disabled(&self, name: &str, disabled: bool) -> Result<bool, StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let done = if disabled {
            sqlx::query("UPDATE users SET disabled_at = COALESCE(disabled_at, $1) WHERE name = $2").bind(now)
        } else {
            sqlx::query("UPDATE users SET disabled_at = NULL WHERE name = $1")
        }
        .bind(name)
        .execute(&mut *tx)
        .await?;
        if disabled {
            end_sessions(&mut tx, name, now).await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn create_session(
        &self,
        id_hash: &str,
        user: &str,
        csrf_token: &str,
        address: &str,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO console_sessions (id_hash, user_name, csrf_token, created_at, last_seen_at, address) \
             VALUES ($1, $2, $3, $4, $4, $5)",
        )
        .bind(id_hash)
        .bind(user)
        .bind(csrf_token)
        .bind(now)
        .bind(address)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The session whose cookie hashes to `id_hash`, if it has not ended
    /// and its user is enabled. Timeouts are the caller's to check.
    pub async fn session(&self, id_hash: &str) -> Result<Option<Session>, StoreError> {
        let row = sqlx::query(
            "SELECT s.user_name, u.role, s.csrf_token, s.created_at, s.last_seen_at FROM console_sessions s \
             JOIN users u ON u.name = s.user_name \
             WHERE s.id_hash = $1 AND s.ended_at IS NULL AND u.disabled_at IS NULL",
        )
        .bind(id_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(Session {
                user: r.try_get("user_name")?,
                role: role_of(&r, "users")?,
                csrf_token: r.try_get("csrf_token")?,
                created_at: r.try_get("created_at")?,
                last_seen_at: r.try_get("last_seen_at")?,
            })
        })
        .transpose()
    }

    /// Records activity on a session (for the idle timeout).
    pub async fn touch_session(&self, id_hash: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE console_sessions SET last_seen_at = $1 WHERE id_hash = $2 AND ended_at IS NULL")
            .bind(now_ms())
            .bind(id_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Forgets sessions that began before `before` (ms): past the absolute
    /// timeout they are dead whatever their state.
    pub async fn purge_sessions(&self, before: i64) -> Result<u64, StoreError> {
        let done =
            sqlx::query("DELETE FROM console_sessions WHERE created_at < $1").bind(before).execute(&self.pool).await?;
        Ok(done.rows_affected())
    }

    /// Ends one session (logout, or a timeout found); false when it had
    /// already ended or never existed.
    pub async fn end_session(&self, id_hash: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE console_sessions SET ended_at = $1 WHERE id_hash = $2 AND ended_at IS NULL")
            .bind(now_ms())
            .bind(id_hash)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}

async fn end_sessions(tx: &mut sqlx::Transaction<'_, sqlx::Any>, user: &str, now: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE console_sessions SET ended_at = $1 WHERE user_name = $2 AND ended_at IS NULL")
        .bind(now)
        .bind(user)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
