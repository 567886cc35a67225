//! Device registry rows.

use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

use super::{Page, Store, StoreError};
use crate::clock::now_ms;

/// A device's standing in the registry. `online`/`offline` is not stored:
/// the gateway's session registry knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    Active,
    Revoked,
    Offboarded,
}

impl DeviceStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Revoked => "revoked",
            Self::Offboarded => "offboarded",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "active" => Ok(Self::Active),
            "revoked" => Ok(Self::Revoked),
            "offboarded" => Ok(Self::Offboarded),
            other => Err(StoreError::Corrupt { table: "devices", detail: format!("status {other:?}") }),
        }
    }
}

/// What the console's device list asks for.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeviceQuery<'a> {
    pub text: &'a str,
    /// Empty: every group.
    pub group: &'a str,
    pub status: Option<DeviceStatus>,
    pub sort: DeviceSort,
    pub descending: bool,
    /// Rows to skip, and at most how many to return (0: every one).
    pub offset: u32,
    pub limit: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DeviceSort {
    #[default]
    Hostname,
    LastSeen,
    Enrolled,
    Group,
    Os,
}

#[derive(Debug, Clone)]
pub struct Device {
    pub id: Uuid,
    pub hostname: String,
    pub os: String,
    pub kernel: String,
    pub agent_version: String,
    pub group: String,
    pub ip: String,
    pub cert_serial: String,
    pub cert_not_after: i64,
    pub status: DeviceStatus,
    pub enrolled_at: i64,
    pub first_seen: Option<i64>,
    pub last_seen: Option<i64>,
    /// Action kinds the agent said it can run (empty until its first Hello).
    pub capabilities: Vec<String>,
    /// Rule bundle and indicator set the agent last said it holds.
    pub rules_version: String,
    pub indicators_version: String,
    /// Why the agent refused the last bundle, if it did.
    pub rules_error: Option<String>,
    /// Detections it sent past its rate (counted, not stored).
    pub alerts_dropped: i64,
    /// A mail host's internal domains (None: not a mail host).
    pub mail_domains: Option<Vec<String>>,
}

pub struct NewDevice<'a> {
    pub id: Uuid,
    pub hostname: &'a str,
    pub group: &'a str,
    pub ip: &'a str,
    pub cert_serial: &'a str,
    pub cert_not_after: i64,
    pub enrollment_token_id: &'a str,
}

/// What a `Hello` tells about the device.
pub struct HelloInfo<'a> {
    pub hostname: &'a str,
    pub os: &'a str,
    pub kernel: &'a str,
    pub agent_version: &'a str,
    pub ip: &'a str,
    pub capabilities: &'a [String],
}

const COLUMNS: &str = "id, hostname, os, kernel, agent_version, group_name, ip, cert_serial, cert_not_after, \
                       status, enrolled_at, first_seen, last_seen, capabilities, rules_version, \
                       indicators_version, rules_error, alerts_dropped, mail_domains";

fn from_row(row: &sqlx::any::AnyRow) -> Result<Device, StoreError> {
    let id: String = row.try_get("id")?;
    let status: String = row.try_get("status")?;
    Ok(Device {
        id: id.parse().map_err(|_| StoreError::Corrupt { table: "devices", detail: format!("id {id:?}") })?,
        hostname: row.try_get("hostname")?,
        os: row.try_get("os")?,
        kernel: row.try_get("kernel")?,
        agent_version: row.try_get("agent_version")?,
        group: row.try_get("group_name")?,
        ip: row.try_get("ip")?,
        cert_serial: row.try_get("cert_serial")?,
        cert_not_after: row.try_get("cert_not_after")?,
        status: DeviceStatus::parse(&status)?,
        enrolled_at: row.try_get("enrolled_at")?,
        first_seen: row.try_get("first_seen")?,
        last_seen: row.try_get("last_seen")?,
        capabilities: {
            let caps: String = row.try_get("capabilities")?;
            caps.split(',').filter(|c| !c.is_empty()).map(str::to_string).collect()
        },
        rules_version: row.try_get("rules_version")?,
        indicators_version: row.try_get("indicators_version")?,
        rules_error: row.try_get("rules_error")?,
        alerts_dropped: row.try_get("alerts_dropped")?,
        mail_domains: {
            let domains: Option<String> = row.try_get("mail_domains")?;
            domains.map(|d| d.split(',').filter(|d| !d.is_empty()).map(str::to_string).collect())
        },
    })
}

/// The WHERE clause of a [`DeviceQuery`] ($1 to $5, see
/// [`bind_device_query`]). LIKE wildcards typed by the operator are
/// matched literally.
const DEVICE_MATCH: &str = "($1 = '' OR LOWER(hostname) LIKE $2 ESCAPE '\\' OR ip LIKE $2 ESCAPE '\\' \
     OR id LIKE $3 ESCAPE '\\') AND ($4 = '' OR group_name = $4) AND ($5 = '' OR status = $5)";

fn bind_device_query<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    q: &DeviceQuery<'q>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    let literal = q.text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_").to_lowercase();
    query
        .bind(q.text)
        .bind(format!("%{literal}%"))
        .bind(format!("{literal}%"))
        .bind(q.group)
        .bind(q.status.map(DeviceStatus::as_str).unwrap_or_default())
}

impl Store {
    pub(super) async fn insert_device<'e, E>(executor: E, d: &NewDevice<'_>) -> Result<(), StoreError>
    where
        E: sqlx::Executor<'e, Database = sqlx::Any>,
    {
        sqlx::query(
            "INSERT INTO devices (id, hostname, group_name, ip, cert_serial, cert_not_after, status, enrolled_at, \
             enrollment_token_id) VALUES ($1, $2, $3, $4, $5, $6, 'active', $7, $8)",
        )
        .bind(d.id.to_string())
        .bind(d.hostname)
        .bind(d.group)
        .bind(d.ip)
        .bind(d.cert_serial)
        .bind(d.cert_not_after)
        .bind(now_ms())
        .bind(d.enrollment_token_id)
        .execute(executor)
        .await?;
        Ok(())
    }

    /// A new active device for a unit test.
    #[cfg(test)]
    pub(crate) async fn test_device(&self) -> Uuid {
        let d = NewDevice {
            id: Uuid::new_v4(),
            hostname: "h",
            group: "default",
            ip: "127.0.0.1",
            cert_serial: "01",
            cert_not_after: 0,
            enrollment_token_id: "",
        };
        Self::insert_device(&self.pool, &d).await.expect("test device");
        d.id
    }

    pub async fn device(&self, id: Uuid) -> Result<Option<Device>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM devices WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Devices ordered by id; `cursor` is the last id of the previous page.
    pub async fn devices(&self, cursor: Option<&str>, limit: u32) -> Result<Page<Device>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM devices WHERE id > $1 ORDER BY id LIMIT $2"))
            .bind(cursor.unwrap_or(""))
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.pool)
            .await?;
        let items = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::of(items, limit, |d| d.id.to_string()))
    }

    /// The devices matching `q`, sorted as it says (at most 100,000).
    /// `text` matches a host name (any case) or IP address containing it,
    /// or an id starting with it.
    pub async fn find_devices(&self, q: &DeviceQuery<'_>) -> Result<Vec<Device>, StoreError> {
        let order = match q.sort {
            DeviceSort::Hostname => "LOWER(hostname)",
            DeviceSort::LastSeen => "COALESCE(last_seen, 0)",
            DeviceSort::Enrolled => "enrolled_at",
            DeviceSort::Group => "group_name",
            DeviceSort::Os => "os",
        };
        let direction = if q.descending { "DESC" } else { "ASC" };
        let limit = if q.limit == 0 { 1_000_000 } else { i64::from(q.limit) };
        let rows = bind_device_query(
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM devices WHERE {DEVICE_MATCH} ORDER BY {order} {direction}, id LIMIT $6 OFFSET $7"
            )),
            q,
        )
        .bind(limit)
        .bind(i64::from(q.offset))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// How many devices [`Store::find_devices`] would return unpaged.
    pub async fn count_devices(&self, q: &DeviceQuery<'_>) -> Result<u64, StoreError> {
        let row = bind_device_query(sqlx::query(&format!("SELECT COUNT(*) AS n FROM devices WHERE {DEVICE_MATCH}")), q)
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0))
    }

    /// Host names of `ids` (those that exist), in one query.
    pub async fn device_names(&self, ids: &[Uuid]) -> Result<std::collections::HashMap<Uuid, String>, StoreError> {
        let mut out = std::collections::HashMap::new();
        for chunk in ids.chunks(500) {
            // Ids come from Uuids, never from input: safe to inline.
            let list = chunk.iter().map(|id| format!("'{id}'")).collect::<Vec<_>>().join(", ");
            let rows = sqlx::query(&format!("SELECT id, hostname FROM devices WHERE id IN ({list})"))
                .fetch_all(&self.pool)
                .await?;
            for r in &rows {
                let id: String = r.try_get("id")?;
                if let Ok(id) = id.parse() {
                    out.insert(id, r.try_get("hostname")?);
                }
            }
        }
        Ok(out)
    }

    /// Every device's id and status: what the TLS verifier consults.
    /// Every device's certificate serials: (id, current, previous).
    pub async fn device_serials(&self) -> Result<Vec<(Uuid, String, Option<String>)>, StoreError> {
        let rows = sqlx::query("SELECT id, cert_serial, prev_cert_serial FROM devices").fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get("id")?;
                let id =
                    id.parse().map_err(|_| StoreError::Corrupt { table: "devices", detail: format!("id {id:?}") })?;
                Ok((id, row.try_get("cert_serial")?, row.try_get("prev_cert_serial")?))
            })
            .collect()
    }

    /// A renewed certificate: `serial` is current; `in_use` (the certificate
    /// the device renewed from) stays valid until the new one is used.
    pub async fn record_renewal(&self, id: Uuid, serial: &str, in_use: &str, not_after: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE devices SET prev_cert_serial = $1, cert_serial = $2, cert_not_after = $3 WHERE id = $4")
            .bind(in_use)
            .bind(serial)
            .bind(not_after)
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The device used its current certificate: the previous one is void.
    pub async fn forget_previous_serial(&self, id: Uuid) -> Result<(), StoreError> {
        sqlx::query("UPDATE devices SET prev_cert_serial = NULL WHERE id = $1")
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn device_statuses(&self) -> Result<Vec<(Uuid, DeviceStatus)>, StoreError> {
        let rows = sqlx::query("SELECT id, status FROM devices").fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get("id")?;
                let status: String = row.try_get("status")?;
                let id =
                    id.parse().map_err(|_| StoreError::Corrupt { table: "devices", detail: format!("id {id:?}") })?;
                Ok((id, DeviceStatus::parse(&status)?))
            })
            .collect()
    }

    /// Record what the agent said in its `Hello`.
    pub async fn record_hello(&self, id: Uuid, hello: &HelloInfo<'_>) -> Result<(), StoreError> {
        let now = now_ms();
        sqlx::query(
            "UPDATE devices SET hostname = $1, os = $2, kernel = $3, agent_version = $4, ip = $5, \
             first_seen = COALESCE(first_seen, $6), last_seen = $6, capabilities = $8, \
             mail_domains = CASE WHEN $9 = 1 THEN mail_domains ELSE NULL END WHERE id = $7",
        )
        .bind(hello.hostname)
        .bind(hello.os)
        .bind(hello.kernel)
        .bind(hello.agent_version)
        .bind(hello.ip)
        .bind(now)
        .bind(id.to_string())
        .bind(hello.capabilities.join(","))
        // A device no longer a mail host forgets its domains.
        .bind(i64::from(hello.capabilities.iter().any(|c| c == "mail_search")))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Record a mail host's internal domains (checked by the caller).
    pub async fn record_mail_host(&self, id: Uuid, domains: &[String]) -> Result<(), StoreError> {
        sqlx::query("UPDATE devices SET mail_domains = $1 WHERE id = $2")
            .bind(domains.join(","))
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Write last-contact times for many devices in one transaction.
    pub async fn record_last_seen(&self, seen: &[(Uuid, i64)]) -> Result<(), StoreError> {
        if seen.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for (id, at) in seen {
            sqlx::query("UPDATE devices SET last_seen = $1 WHERE id = $2 AND (last_seen IS NULL OR last_seen < $1)")
                .bind(*at)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Mark a device offboarded (its history stays until the retention ends).
    pub async fn offboard_device(&self, id: Uuid) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE devices SET status = 'offboarded', offboarded_at = COALESCE(offboarded_at, $1) WHERE id = $2",
        )
        .bind(now_ms())
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Delete devices offboarded before `before`, with their actions and
    /// action events. Returns how many devices were purged.
    pub async fn purge_offboarded(&self, before: i64) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let old = "SELECT id FROM devices WHERE status = 'offboarded' AND offboarded_at < $1";
        sqlx::query(&format!(
            "DELETE FROM action_events WHERE action_id IN (SELECT id FROM actions WHERE device_id IN ({old}))"
        ))
        .bind(before)
        .execute(&mut *tx)
        .await?;
        sqlx::query(&format!("DELETE FROM actions WHERE device_id IN ({old})")).bind(before).execute(&mut *tx).await?;
        sqlx::query(&format!(
            "DELETE FROM alert_events WHERE alert_id IN (SELECT id FROM alerts WHERE device_id IN ({old}))"
        ))
        .bind(before)
        .execute(&mut *tx)
        .await?;
        for table in ["alerts", "alert_reports"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE device_id IN ({old})"))
                .bind(before)
                .execute(&mut *tx)
                .await?;
        }
        let done =
            sqlx::query(&format!("DELETE FROM devices WHERE id IN ({old})")).bind(before).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// Change a device's status; returns false when no such device exists.
    pub async fn set_device_status(&self, id: Uuid, status: DeviceStatus) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE devices SET status = $1 WHERE id = $2")
            .bind(status.as_str())
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::stores;

    async fn names(store: &Store, q: DeviceQuery<'_>) -> Vec<String> {
        store.find_devices(&q).await.expect("find").into_iter().map(|d| d.hostname).collect()
    }

    #[tokio::test]
    async fn devices_are_found_by_name_ip_or_id_prefix_filtered_and_sorted() {
        for (store, _dir) in stores().await {
            let mut ids = Vec::new();
            for (host, ip, group) in [
                ("Web-01", "10.0.0.5", "servers"),
                ("web-02", "10.0.0.6", "servers"),
                ("db_1", "10.0.1.9", "default"),
                ("dbx1", "192.168.7.1", "default"),
            ] {
                let d = NewDevice {
                    id: Uuid::new_v4(),
                    hostname: host,
                    group,
                    ip,
                    cert_serial: "01",
                    cert_not_after: 0,
                    enrollment_token_id: "t",
                };
                Store::insert_device(&store.pool, &d).await.expect("insert");
                ids.push(d.id);
            }
            let q = DeviceQuery::default();
            // Any case; sorted by host name.
            assert_eq!(names(&store, DeviceQuery { text: "WEB", ..q }).await, ["Web-01", "web-02"]);
            assert_eq!(names(&store, DeviceQuery { text: "10.0.1", ..q }).await, ["db_1"]);
            // `_` and `%` are characters here, not wildcards.
            assert_eq!(names(&store, DeviceQuery { text: "db_", ..q }).await, ["db_1"]);
            assert!(names(&store, DeviceQuery { text: "%", ..q }).await.is_empty());
            let prefix = ids[3].to_string()[..8].to_string();
            assert_eq!(names(&store, DeviceQuery { text: &prefix, ..q }).await, ["dbx1"]);
            let servers = DeviceQuery { group: "servers", descending: true, ..q };
            assert_eq!(names(&store, servers).await, ["web-02", "Web-01"]);
            store.set_device_status(ids[0], DeviceStatus::Revoked).await.expect("revoke");
            assert_eq!(names(&store, DeviceQuery { status: Some(DeviceStatus::Revoked), ..q }).await, ["Web-01"]);
            assert_eq!(names(&store, q).await.len(), 4);
        }
    }

    #[tokio::test]
    async fn devices_page_through_by_cursor() {
        for (store, _dir) in stores().await {
            for i in 0..5 {
                let d = NewDevice {
                    id: Uuid::new_v4(),
                    hostname: &format!("h{i}"),
                    group: "default",
                    ip: "127.0.0.1",
                    cert_serial: "01",
                    cert_not_after: 0,
                    enrollment_token_id: "t",
                };
                Store::insert_device(&store.pool, &d).await.expect("insert");
            }
            let first = store.devices(None, 2).await.expect("page 1");
            assert_eq!(first.items.len(), 2);
            let second = store.devices(first.next_cursor.as_deref(), 2).await.expect("page 2");
            let third = store.devices(second.next_cursor.as_deref(), 2).await.expect("page 3");
            assert_eq!(third.items.len(), 1);
            assert!(third.next_cursor.is_none());
            let mut all: Vec<_> = first.items.iter().chain(&second.items).chain(&third.items).map(|d| d.id).collect();
            all.dedup();
            assert_eq!(all.len(), 5);

            let id = all[0];
            // Offboarded devices are purged only once past the retention.
            let gone = all[1];
            assert!(store.offboard_device(gone).await.expect("offboard"));
            assert_eq!(store.purge_offboarded(now_ms() - 60_000).await.expect("purge early"), 0);
            assert!(store.device(gone).await.expect("get").is_some());
            assert_eq!(store.purge_offboarded(now_ms() + 1).await.expect("purge"), 1);
            assert!(store.device(gone).await.expect("get").is_none());
            assert!(store.set_device_status(id, DeviceStatus::Revoked).await.expect("revoke"));
            assert_eq!(store.device(id).await.expect("get").expect("exists").status, DeviceStatus::Revoked);
            assert!(!store.set_device_status(Uuid::new_v4(), DeviceStatus::Revoked).await.expect("missing"));
        }
    }
}
