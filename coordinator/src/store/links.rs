//! The URL blocklist and the click log (time-of-click protection).

use sqlx::Row;
use uuid::Uuid;

use super::{Store, StoreError};

/// One blocklist entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlBlock {
    /// The `block_url` action that made it.
    pub id: Uuid,
    /// The mail host whose wrapped links it applies to.
    pub device_id: Uuid,
    /// `exact`, `domain` or `prefix`.
    pub match_kind: String,
    pub value: String,
    pub comment: String,
    pub created_by: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

impl UrlBlock {
    /// The block as the checks read it; `None` for a match kind this build
    /// does not know.
    pub fn blocked(&self) -> Option<picket_common::url_blocklist::BlockedUrl> {
        use picket_common::actions::mail::UrlMatch;
        let match_type = match self.match_kind.as_str() {
            "exact" => UrlMatch::Exact,
            "domain" => UrlMatch::Domain,
            "prefix" => UrlMatch::Prefix,
            _ => return None,
        };
        Some(picket_common::url_blocklist::BlockedUrl {
            id: self.id,
            match_type,
            value: self.value.clone(),
            comment: self.comment.clone(),
            expires_at: self.expires_at,
        })
    }
}

/// One click on a wrapped link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Click {
    pub id: Uuid,
    pub at: i64,
    pub device_id: Uuid,
    pub recipient: String,
    pub message_id: String,
    pub url: String,
    /// `allowed` or `blocked`.
    pub verdict: String,
    pub block_id: Option<Uuid>,
    /// The clicking client's address.
    pub client: String,
}

fn uuid(table: &'static str, s: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(s).map_err(|e| StoreError::corrupt(table, format!("id {s:?}: {e}")))
}

const BLOCK_COLUMNS: &str = "id, device_id, match_kind, value, comment, created_by, created_at, expires_at";

fn url_block(r: &sqlx::any::AnyRow) -> Result<UrlBlock, StoreError> {
    Ok(UrlBlock {
        id: uuid("url_blocks", &r.try_get::<String, _>("id")?)?,
        device_id: uuid("url_blocks", &r.try_get::<String, _>("device_id")?)?,
        match_kind: r.try_get("match_kind")?,
        value: r.try_get("value")?,
        comment: r.try_get("comment")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
    })
}

/// `($1, …, $columns), ($columns+1, …), …` for `rows` rows.
fn placeholders(rows: usize, columns: usize) -> String {
    let row = |r: usize| {
        let cells: Vec<String> = (1..=columns).map(|c| format!("${}", r * columns + c)).collect();
        format!("({})", cells.join(", "))
    };
    (0..rows).map(row).collect::<Vec<_>>().join(", ")
}

impl Store {
    /// Entries not removed (expired ones included: the caller compares
    /// `expires_at` with its clock at check time).
    pub async fn url_blocks(&self) -> Result<Vec<UrlBlock>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {BLOCK_COLUMNS} FROM url_blocks WHERE removed_at IS NULL ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(url_block).collect()
    }

    /// Mail host `device`'s entries in force at `now`, newest first.
    pub async fn url_blocks_of(&self, device: Uuid, now: i64) -> Result<Vec<UrlBlock>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {BLOCK_COLUMNS} FROM url_blocks WHERE device_id = $1 AND removed_at IS NULL \
             AND (expires_at IS NULL OR expires_at > $2) ORDER BY created_at DESC, id"
        ))
        .bind(device.to_string())
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(url_block).collect()
    }

    /// Add a block; one with its id already there is left as it is (a
    /// re-run of the same action).
    pub async fn insert_url_block(&self, block: &UrlBlock) -> Result<(), StoreError> {
        self.insert_url_blocks(std::slice::from_ref(block)).await
    }

    /// Add blocks in one transaction (ids already there are left as they are).
    pub async fn insert_url_blocks(&self, blocks: &[UrlBlock]) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        for block in blocks {
            sqlx::query(
                "INSERT INTO url_blocks (id, device_id, match_kind, value, comment, created_by, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
            )
            .bind(block.id.to_string())
            .bind(block.device_id.to_string())
            .bind(&block.match_kind)
            .bind(&block.value)
            .bind(&block.comment)
            .bind(&block.created_by)
            .bind(block.created_at)
            .bind(block.expires_at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Mark `device`'s entry `id` removed; `false` when it was not there
    /// (or already removed).
    pub async fn remove_url_block(&self, id: Uuid, device: Uuid, by: &str, at: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE url_blocks SET removed_at = $1, removed_by = $2 \
             WHERE id = $3 AND device_id = $4 AND removed_at IS NULL",
        )
        .bind(at)
        .bind(by)
        .bind(id.to_string())
        .bind(device.to_string())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// How many clicks the log holds.
    pub async fn click_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM url_clicks").fetch_one(&self.pool).await?.try_get("n")?)
    }

    /// Whether `device` has (or had) block `id`.
    pub async fn url_block_exists(&self, id: Uuid, device: Uuid) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT id FROM url_blocks WHERE id = $1 AND device_id = $2")
            .bind(id.to_string())
            .bind(device.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Append clicks, in one transaction.
    pub async fn insert_clicks(&self, clicks: &[Click]) -> Result<(), StoreError> {
        // Many rows a statement: a busy click listener answers faster than
        // one INSERT a row is written.
        const ROWS: usize = 500;
        let mut tx = self.begin_write().await?;
        for chunk in clicks.chunks(ROWS) {
            let sql = format!(
                "INSERT INTO url_clicks (id, at, device_id, recipient, message_id, url, verdict, block_id, client) \
                 VALUES {}",
                placeholders(chunk.len(), 9)
            );
            let mut query = sqlx::query(&sql);
            for c in chunk {
                query = query
                    .bind(c.id.to_string())
                    .bind(c.at)
                    .bind(c.device_id.to_string())
                    .bind(&c.recipient)
                    .bind(&c.message_id)
                    .bind(&c.url)
                    .bind(&c.verdict)
                    .bind(c.block_id.map(|b| b.to_string()))
                    .bind(&c.client);
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The latest `limit` clicks, newest first, on `url` and/or by
    /// `recipient` when given.
    pub async fn clicks(
        &self,
        url: Option<&str>,
        recipient: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Click>, StoreError> {
        let mut sql = String::from(
            "SELECT id, at, device_id, recipient, message_id, url, verdict, block_id, client FROM url_clicks WHERE 1 = 1",
        );
        let mut n = 0;
        for (column, value) in [("url", url), ("recipient", recipient)] {
            if value.is_some() {
                n += 1;
                sql.push_str(&format!(" AND {column} = ${n}"));
            }
        }
        sql.push_str(&format!(" ORDER BY at DESC, id LIMIT ${}", n + 1));
        let mut query = sqlx::query(&sql);
        for value in [url, recipient].into_iter().flatten() {
            query = query.bind(value);
        }
        let rows = query.bind(limit).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let block: Option<String> = r.try_get("block_id")?;
                Ok(Click {
                    id: uuid("url_clicks", &r.try_get::<String, _>("id")?)?,
                    at: r.try_get("at")?,
                    device_id: uuid("url_clicks", &r.try_get::<String, _>("device_id")?)?,
                    recipient: r.try_get("recipient")?,
                    message_id: r.try_get("message_id")?,
                    url: r.try_get("url")?,
                    verdict: r.try_get("verdict")?,
                    block_id: block.map(|b| uuid("url_clicks", &b)).transpose()?,
                    client: r.try_get("client")?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_number_every_cell_of_every_row() {
        assert_eq!(super::placeholders(2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(super::placeholders(1, 1), "($1)");
    }
}
