//! Enrollment tokens and API tokens. Only SHA-256 hashes of the secrets are
//! stored; the secret is shown once, when the token is created.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Row;
use uuid::Uuid;

use super::{devices::NewDevice, Page, Store, StoreError};
use crate::clock::now_ms;

/// API roles, each including the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Responder,
    Approver,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Responder => "responder",
            Self::Approver => "approver",
            Self::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "viewer" => Some(Self::Viewer),
            "responder" => Some(Self::Responder),
            "approver" => Some(Self::Approver),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

/// A new random secret with a recognisable prefix (`pkt_` enrollment,
/// `pka_` API), 256 bits of entropy.
pub fn new_secret(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{prefix}{}", hex::encode(bytes))
}

pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[derive(Debug, Clone)]
pub struct EnrollmentToken {
    pub id: String,
    pub group: String,
    pub created_by: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub max_uses: i64,
    pub uses_left: i64,
    pub revoked_at: Option<i64>,
    /// Set when a device it enrolled was revoked: no enrollment until an
    /// admin resumes it.
    pub suspended_at: Option<i64>,
    pub suspended_reason: Option<String>,
}

pub struct NewEnrollmentToken<'a> {
    pub group: &'a str,
    pub created_by: &'a str,
    pub expires_at: i64,
    pub max_uses: i64,
}

/// Why an enrollment token cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    Unknown,
    Expired,
    UsedUp,
    Revoked,
    /// A device it enrolled was revoked; an admin has to resume it.
    Suspended,
}

/// Why [`Store::enroll_device_with`] registered nothing.
#[derive(Debug)]
pub enum Refused<E> {
    Token(TokenRefusal),
    /// The request itself (the CSR) was refused; no use was taken.
    Request(E),
}

/// A consumed token use: the device row is written in the same transaction.
pub struct TokenGrant {
    pub token_id: String,
    pub group: String,
}

/// Whose an API token is: a person's (actions it requests are manual) or
/// an integration's (their source is `api`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    User,
    Integration,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Integration => "integration",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(Self::User),
            "integration" => Some(Self::Integration),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ApiToken {
    pub id: String,
    pub name: String,
    /// The person (or integration) it speaks for; several tokens may share one.
    pub user: String,
    pub kind: TokenKind,
    pub role: Role,
    pub created_by: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl ApiToken {
    /// The identity the two-person rule compares: the person, never the
    /// token's name.
    pub fn identity(&self) -> String {
        format!("{}:{}", self.kind.as_str(), self.user)
    }
}

pub struct NewApiToken<'a> {
    pub name: &'a str,
    /// Defaults to `name`.
    pub user: Option<&'a str>,
    pub kind: TokenKind,
    pub role: Role,
    pub created_by: &'a str,
    pub expires_at: Option<i64>,
}

const API_COLUMNS: &str = "id, name, user_name, kind, role, created_by, created_at, expires_at, revoked_at";

fn api_token_from_row(row: &sqlx::any::AnyRow) -> Result<ApiToken, StoreError> {
    let role: String = row.try_get("role")?;
    let kind: String = row.try_get("kind")?;
    let name: String = row.try_get("name")?;
    let user: Option<String> = row.try_get("user_name")?;
    Ok(ApiToken {
        id: row.try_get("id")?,
        user: user.unwrap_or_else(|| name.clone()),
        name,
        kind: TokenKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt { table: "api_tokens", detail: format!("kind {kind:?}") })?,
        role: Role::parse(&role)
            .ok_or_else(|| StoreError::Corrupt { table: "api_tokens", detail: format!("role {role:?}") })?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

const ENROLL_COLUMNS: &str =
    "id, group_name, created_by, created_at, expires_at, max_uses, uses_left, revoked_at, suspended_at, suspended_reason";

fn enrollment_from_row(row: &sqlx::any::AnyRow) -> Result<EnrollmentToken, StoreError> {
    Ok(EnrollmentToken {
        id: row.try_get("id")?,
        group: row.try_get("group_name")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        max_uses: row.try_get("max_uses")?,
        uses_left: row.try_get("uses_left")?,
        revoked_at: row.try_get("revoked_at")?,
        suspended_at: row.try_get("suspended_at")?,
        suspended_reason: row.try_get("suspended_reason")?,
    })
}

impl Store {
    /// Create an enrollment token; returns the row and the secret (shown once).
    pub async fn create_enrollment_token(
        &self,
        new: &NewEnrollmentToken<'_>,
    ) -> Result<(EnrollmentToken, String), StoreError> {
        let secret = new_secret("pkt_");
        let token = EnrollmentToken {
            id: Uuid::new_v4().to_string(),
            group: new.group.to_string(),
            created_by: new.created_by.to_string(),
            created_at: now_ms(),
            expires_at: new.expires_at,
            max_uses: new.max_uses,
            uses_left: new.max_uses,
            revoked_at: None,
            suspended_at: None,
            suspended_reason: None,
        };
        sqlx::query(
            "INSERT INTO enrollment_tokens (id, token_hash, group_name, created_by, created_at, expires_at, \
             max_uses, uses_left) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&token.id)
        .bind(hash_secret(&secret))
        .bind(&token.group)
        .bind(&token.created_by)
        .bind(token.created_at)
        .bind(token.expires_at)
        .bind(token.max_uses)
        .bind(token.uses_left)
        .execute(&self.pool)
        .await?;
        Ok((token, secret))
    }

    /// Enrollment tokens, newest first by id order; `cursor` is the last id.
    pub async fn enrollment_tokens(
        &self,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<EnrollmentToken>, StoreError> {
        let rows =
            sqlx::query(&format!("SELECT {ENROLL_COLUMNS} FROM enrollment_tokens WHERE id > $1 ORDER BY id LIMIT $2"))
                .bind(cursor.unwrap_or(""))
                .bind(i64::from(limit) + 1)
                .fetch_all(&self.pool)
                .await?;
        let mut items = rows.iter().map(enrollment_from_row).collect::<Result<Vec<_>, _>>()?;
        let next_cursor = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|t| t.id.clone())
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    pub async fn enrollment_token(&self, id: &str) -> Result<Option<EnrollmentToken>, StoreError> {
        let row = sqlx::query(&format!("SELECT {ENROLL_COLUMNS} FROM enrollment_tokens WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(enrollment_from_row).transpose()
    }

    /// Revoke a token; false when it does not exist.
    pub async fn revoke_enrollment_token(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE enrollment_tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2")
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Suspend the token that enrolled `device` (its device was revoked):
    /// returns the token's id, if the device has one.
    pub async fn suspend_enrollment_token_of(&self, device: Uuid, reason: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT enrollment_token_id FROM devices WHERE id = $1")
            .bind(device.to_string())
            .fetch_optional(&self.pool)
            .await?;
        let Some(token_id) = row.map(|r| r.try_get::<String, _>("enrollment_token_id")).transpose()? else {
            return Ok(None);
        };
        sqlx::query(
            "UPDATE enrollment_tokens SET suspended_at = COALESCE(suspended_at, $1), suspended_reason = $2 WHERE id = $3",
        )
        .bind(now_ms())
        .bind(reason)
        .bind(&token_id)
        .execute(&self.pool)
        .await?;
        Ok(Some(token_id))
    }

    /// Let a suspended token enroll again; false when it does not exist.
    pub async fn resume_enrollment_token(&self, id: &str) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE enrollment_tokens SET suspended_at = NULL, suspended_reason = NULL WHERE id = $1")
                .bind(id)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Use one use of the token `secret` and register `new` in the token's
    /// group, atomically: either both happen or neither.
    pub async fn enroll_device(
        &self,
        secret: &str,
        new: &NewDeviceOwned,
    ) -> Result<Result<TokenGrant, TokenRefusal>, StoreError> {
        let made = self.enroll_device_with(secret, |_| Ok::<_, std::convert::Infallible>((new.clone(), ()))).await?;
        Ok(match made {
            Ok((grant, ())) => Ok(grant),
            Err(Refused::Token(t)) => Err(t),
            Err(Refused::Request(never)) => match never {},
        })
    }

    /// Enrollment in the order that keeps unauthenticated input away from
    /// the parsers: in one transaction, check the token `secret` and take
    /// one use; only then call `make` (which parses and signs the CSR) to
    /// get the device to register; then register it. If the token is
    /// refused, `make` never runs; if `make` fails, nothing is used.
    pub async fn enroll_device_with<T, E>(
        &self,
        secret: &str,
        make: impl FnOnce(&TokenGrant) -> Result<(NewDeviceOwned, T), E>,
    ) -> Result<Result<(TokenGrant, T), Refused<E>>, StoreError> {
        let hash = hash_secret(secret);
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "SELECT id, group_name, expires_at, uses_left, revoked_at, suspended_at FROM enrollment_tokens \
             WHERE token_hash = $1",
        )
        .bind(&hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(Err(Refused::Token(TokenRefusal::Unknown))) };
        let token_id: String = row.try_get("id")?;
        let revoked_at: Option<i64> = row.try_get("revoked_at")?;
        let expires_at: i64 = row.try_get("expires_at")?;
        if revoked_at.is_some() {
            return Ok(Err(Refused::Token(TokenRefusal::Revoked)));
        }
        if row.try_get::<Option<i64>, _>("suspended_at")?.is_some() {
            return Ok(Err(Refused::Token(TokenRefusal::Suspended)));
        }
        if expires_at <= now {
            return Ok(Err(Refused::Token(TokenRefusal::Expired)));
        }
        // The guard in WHERE makes concurrent enrollments race safely.
        let used =
            sqlx::query("UPDATE enrollment_tokens SET uses_left = uses_left - 1 WHERE id = $1 AND uses_left > 0")
                .bind(&token_id)
                .execute(&mut *tx)
                .await?;
        if used.rows_affected() == 0 {
            return Ok(Err(Refused::Token(TokenRefusal::UsedUp)));
        }
        let grant = TokenGrant { token_id, group: row.try_get("group_name")? };
        // Dropping the transaction rolls the use back.
        let (new, extra) = match make(&grant) {
            Ok(made) => made,
            Err(e) => return Ok(Err(Refused::Request(e))),
        };
        Store::insert_device(
            &mut *tx,
            &NewDevice {
                id: new.id,
                hostname: &new.hostname,
                group: &grant.group,
                ip: &new.ip,
                cert_serial: &new.cert_serial,
                cert_not_after: new.cert_not_after,
                enrollment_token_id: &grant.token_id,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(Ok((grant, extra)))
    }

    /// Create an API token; returns it and its secret (shown once).
    pub async fn create_api_token(&self, new: &NewApiToken<'_>) -> Result<(ApiToken, String), StoreError> {
        let secret = new_secret("pka_");
        let token = ApiToken {
            id: Uuid::new_v4().to_string(),
            name: new.name.to_string(),
            user: new.user.unwrap_or(new.name).to_string(),
            kind: new.kind,
            role: new.role,
            created_by: new.created_by.to_string(),
            created_at: now_ms(),
            expires_at: new.expires_at,
            revoked_at: None,
        };
        sqlx::query(
            "INSERT INTO api_tokens (id, name, token_hash, role, created_by, created_at, user_name, kind, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&token.id)
        .bind(&token.name)
        .bind(hash_secret(&secret))
        .bind(token.role.as_str())
        .bind(&token.created_by)
        .bind(token.created_at)
        .bind(&token.user)
        .bind(token.kind.as_str())
        .bind(token.expires_at)
        .execute(&self.pool)
        .await?;
        Ok((token, secret))
    }

    pub async fn api_token_name_taken(&self, name: &str) -> Result<bool, StoreError> {
        let row =
            sqlx::query("SELECT id FROM api_tokens WHERE name = $1").bind(name).fetch_optional(&self.pool).await?;
        Ok(row.is_some())
    }

    pub async fn api_token_count(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM api_tokens").fetch_one(&self.pool).await?;
        Ok(row.try_get("n")?)
    }

    /// The API token whose secret is `secret`, if it is live: not revoked,
    /// not expired. Looked up on every request, so a revocation counts from
    /// the next one.
    pub async fn api_token_by_secret(&self, secret: &str) -> Result<Option<ApiToken>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {API_COLUMNS} FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL \
             AND (expires_at IS NULL OR expires_at > $2)"
        ))
        .bind(hash_secret(secret))
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(api_token_from_row).transpose()
    }

    pub async fn api_token(&self, id: &str) -> Result<Option<ApiToken>, StoreError> {
        let row = sqlx::query(&format!("SELECT {API_COLUMNS} FROM api_tokens WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(api_token_from_row).transpose()
    }

    /// Every API token (never their secrets), oldest first.
    pub async fn api_tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {API_COLUMNS} FROM api_tokens ORDER BY created_at, id"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(api_token_from_row).collect()
    }

    /// Revoke an API token (effective on its next request); false when it
    /// does not exist.
    pub async fn revoke_api_token(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2")
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

/// The device row to write when an enrollment token is consumed.
#[derive(Debug, Clone)]
pub struct NewDeviceOwned {
    pub id: Uuid,
    pub hostname: String,
    pub ip: String,
    pub cert_serial: String,
    pub cert_not_after: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::stores;

    fn device() -> NewDeviceOwned {
        NewDeviceOwned {
            id: Uuid::new_v4(),
            hostname: "h".into(),
            ip: "127.0.0.1".into(),
            cert_serial: "01".into(),
            cert_not_after: 0,
        }
    }

    #[tokio::test]
    async fn enrollment_tokens_are_counted_expired_and_revoked() {
        for (store, _dir) in stores().await {
            let (token, secret) = store
                .create_enrollment_token(&NewEnrollmentToken {
                    group: "servers",
                    created_by: "admin",
                    expires_at: now_ms() + 60_000,
                    max_uses: 2,
                })
                .await
                .expect("create");
            let grant = store.enroll_device(&secret, &device()).await.expect("db").expect("first use");
            assert_eq!(grant.group, "servers");
            store.enroll_device(&secret, &device()).await.expect("db").expect("second use");
            let third = store.enroll_device(&secret, &device()).await.expect("db");
            assert_eq!(third.err(), Some(TokenRefusal::UsedUp));
            assert_eq!(store.enrollment_token(&token.id).await.expect("get").expect("exists").uses_left, 0);

            let unknown = store.enroll_device("pkt_nope", &device()).await.expect("db");
            assert_eq!(unknown.err(), Some(TokenRefusal::Unknown));

            let (expired, secret) = store
                .create_enrollment_token(&NewEnrollmentToken {
                    group: "g",
                    created_by: "admin",
                    expires_at: now_ms() - 1,
                    max_uses: 5,
                })
                .await
                .expect("create");
            assert_eq!(store.enroll_device(&secret, &device()).await.expect("db").err(), Some(TokenRefusal::Expired));
            assert!(store.revoke_enrollment_token(&expired.id).await.expect("revoke"));
            assert_eq!(store.enroll_device(&secret, &device()).await.expect("db").err(), Some(TokenRefusal::Revoked));
            // A refused enrollment used nothing.
            assert_eq!(store.enrollment_token(&expired.id).await.expect("get").expect("exists").uses_left, 5);
        }
    }

    #[tokio::test]
    async fn api_tokens_are_found_by_secret_only() {
        for (store, _dir) in stores().await {
            let new = NewApiToken {
                name: "ops",
                user: None,
                kind: TokenKind::User,
                role: Role::Responder,
                created_by: "admin",
                expires_at: None,
            };
            let (token, secret) = store.create_api_token(&new).await.expect("create");
            let found = store.api_token_by_secret(&secret).await.expect("db").expect("found");
            assert_eq!(found.id, token.id);
            assert_eq!(found.role, Role::Responder);
            assert!(store.api_token_by_secret(&hash_secret(&secret)).await.expect("db").is_none());
            assert!(store.api_token_name_taken("ops").await.expect("db"));
            assert_eq!(found.identity(), "user:ops");
            // Expired and revoked tokens are not found any more.
            let expired = NewApiToken { name: "old", expires_at: Some(now_ms() - 1), ..new };
            let (_, old) = store.create_api_token(&expired).await.expect("create");
            assert!(store.api_token_by_secret(&old).await.expect("db").is_none());
            assert!(store.revoke_api_token(&token.id).await.expect("revoke"));
            assert!(store.api_token_by_secret(&secret).await.expect("db").is_none());
            let listed = store.api_tokens().await.expect("list");
            assert_eq!(listed.len(), 2);
            assert!(listed.iter().any(|t| t.id == token.id && t.revoked_at.is_some()));
        }
    }
}
