//! Action rows and their transitions (the event log they write is read in
//! `events.rs`).
//!
//! Every status change goes through [`Store::transition`] with a
//! [`Step`] of the lifecycle table (`lifecycle.rs`): it updates the row
//! only if it is still in one of the step's `from` statuses and appends an
//! `action_events` row in the same transaction: the event log is complete
//! by construction, and two racing deciders cannot both win.

use std::collections::HashMap;

use picket_common::actions::ActionKind;
use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

use super::lifecycle::{ActionStatus, Move, Step};
use super::{Page, Store, StoreError};
use crate::clock::now_ms;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionSource {
    AutomatedDeviceAction,
    ManualDeviceAction,
    LiveResponse,
    Api,
    AutomatedEmailAction,
    ManualEmailAction,
}

impl ActionSource {
    pub const ALL: [ActionSource; 6] = [
        Self::AutomatedDeviceAction,
        Self::ManualDeviceAction,
        Self::LiveResponse,
        Self::Api,
        Self::AutomatedEmailAction,
        Self::ManualEmailAction,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AutomatedDeviceAction => "automated_device_action",
            Self::ManualDeviceAction => "manual_device_action",
            Self::LiveResponse => "live_response",
            Self::Api => "api",
            Self::AutomatedEmailAction => "automated_email_action",
            Self::ManualEmailAction => "manual_email_action",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Manual sources need a comment and fall under the approval policy.
    /// Chosen by the coordinator's automation, not by a person or an
    /// integration.
    pub fn is_automated(self) -> bool {
        matches!(self, Self::AutomatedDeviceAction | Self::AutomatedEmailAction)
    }
}

/// The kinds the coordinator runs itself, as SQL (`kind IN (…)`); agents
/// are never sent them. A unit test keeps it in step with
/// `ActionKind::on_coordinator`.
const HERE: &str = "'block_url', 'unblock_url'";

#[derive(Debug, Clone)]
pub struct Action {
    pub id: Uuid,
    pub kind: ActionKind,
    pub params: String,
    pub device_id: Uuid,
    pub source: ActionSource,
    pub requestor: String,
    /// Who asked, as the two-person rule compares it (empty on actions from
    /// before identities were recorded: the name is compared then).
    pub requestor_identity: String,
    pub comment: String,
    pub investigation_id: Option<String>,
    pub status: ActionStatus,
    pub decided_by: Option<String>,
    pub decision_comment: Option<String>,
    pub progress_phase: Option<String>,
    pub progress_percent: Option<i64>,
    pub result: Option<String>,
    pub error: Option<String>,
    pub failure_reason: Option<String>,
    pub undoes: Option<Uuid>,
    pub undone_by: Option<Uuid>,
    pub created_at: i64,
    pub updated_at: i64,
    pub queued_at: Option<i64>,
    pub expires_at: Option<i64>,
}

/// A device's containment, from its action history.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Containment {
    pub isolated: bool,
    pub restricted: bool,
}

/// A new action to insert.
pub struct NewAction<'a> {
    pub kind: ActionKind,
    pub params: &'a str,
    pub device_id: Uuid,
    pub source: ActionSource,
    pub requestor: &'a str,
    /// Who asked, for the two-person rule (`user:alice`, `system:automation`).
    pub requestor_identity: &'a str,
    pub comment: &'a str,
    pub investigation_id: Option<&'a str>,
    pub status: ActionStatus,
    pub dedupe_key: &'a str,
    pub undoes: Option<Uuid>,
    pub expires_at: i64,
}

/// Column updates that ride along with a transition.
#[derive(Default)]
pub struct Changes<'a> {
    /// When set, the action must belong to this device (agents can only
    /// touch their own actions).
    pub device: Option<Uuid>,
    pub decided_by: Option<&'a str>,
    pub decision_comment: Option<&'a str>,
    pub result: Option<&'a str>,
    pub error: Option<&'a str>,
    pub failure_reason: Option<&'a str>,
    pub queued_at: Option<i64>,
    /// `Some(None)` clears the deadline.
    pub expires_at: Option<Option<i64>>,
}

#[derive(Default)]
pub struct ActionFilter {
    pub statuses: Vec<ActionStatus>,
    pub device: Option<Uuid>,
    pub kind: Option<ActionKind>,
    pub source: Option<ActionSource>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// Only the actions of this investigation.
    pub investigation: Option<String>,
}

const COLUMNS: &str =
    "id, kind, params, device_id, source, requestor, requestor_identity, comment, investigation_id, status, \
    decided_by, decision_comment, progress_phase, progress_percent, result, error, failure_reason, undoes, \
    undone_by, created_at, updated_at, queued_at, expires_at";

fn corrupt(detail: String) -> StoreError {
    StoreError::Corrupt { table: "actions", detail }
}

pub(super) fn uuid_col(row: &sqlx::any::AnyRow, col: &str) -> Result<Uuid, StoreError> {
    let s: String = row.try_get(col)?;
    s.parse().map_err(|_| corrupt(format!("{col} {s:?}")))
}

fn opt_uuid_col(row: &sqlx::any::AnyRow, col: &str) -> Result<Option<Uuid>, StoreError> {
    let s: Option<String> = row.try_get(col)?;
    s.map(|s| s.parse().map_err(|_| corrupt(format!("{col} {s:?}")))).transpose()
}

fn from_row(row: &sqlx::any::AnyRow) -> Result<Action, StoreError> {
    let status: String = row.try_get("status")?;
    let source: String = row.try_get("source")?;
    let kind: String = row.try_get("kind")?;
    Ok(Action {
        id: uuid_col(row, "id")?,
        kind: ActionKind::parse(&kind).ok_or_else(|| corrupt(format!("kind {kind:?}")))?,
        params: row.try_get("params")?,
        device_id: uuid_col(row, "device_id")?,
        source: ActionSource::parse(&source).ok_or_else(|| corrupt(format!("source {source:?}")))?,
        requestor: row.try_get("requestor")?,
        requestor_identity: row.try_get("requestor_identity")?,
        comment: row.try_get("comment")?,
        investigation_id: row.try_get("investigation_id")?,
        status: ActionStatus::parse(&status).ok_or_else(|| corrupt(format!("status {status:?}")))?,
        decided_by: row.try_get("decided_by")?,
        decision_comment: row.try_get("decision_comment")?,
        progress_phase: row.try_get("progress_phase")?,
        progress_percent: row.try_get("progress_percent")?,
        result: row.try_get("result")?,
        error: row.try_get("error")?,
        failure_reason: row.try_get("failure_reason")?,
        undoes: opt_uuid_col(row, "undoes")?,
        undone_by: opt_uuid_col(row, "undone_by")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        queued_at: row.try_get("queued_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}

fn status_list(statuses: &[ActionStatus]) -> String {
    // Statuses come from the enum, never from input: safe to inline.
    statuses.iter().map(|s| format!("'{}'", s.as_str())).collect::<Vec<_>>().join(", ")
}

impl Store {
    /// Insert a new action, or return the live action with the same dedupe
    /// key. `Ok((action, true))` when this call created it.
    pub async fn insert_action(&self, new: &NewAction<'_>) -> Result<(Action, bool), StoreError> {
        let now = now_ms();
        let id = Uuid::new_v4();
        let mut tx = self.begin_write().await?;
        let existing = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM actions WHERE dedupe_key = $1 AND status IN ({})",
            status_list(&ActionStatus::LIVE)
        ))
        .bind(new.dedupe_key)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = existing {
            return Ok((from_row(&row)?, false));
        }
        let queued_at = (new.status == ActionStatus::Queued).then_some(now);
        sqlx::query(
            "INSERT INTO actions (id, kind, params, device_id, source, requestor, comment, investigation_id, status, \
             dedupe_key, undoes, created_at, updated_at, queued_at, expires_at, requestor_identity) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, $13, $14, $15)",
        )
        .bind(id.to_string())
        .bind(new.kind.as_str())
        .bind(new.params)
        .bind(new.device_id.to_string())
        .bind(new.source.as_str())
        .bind(new.requestor)
        .bind(new.comment)
        .bind(new.investigation_id)
        .bind(new.status.as_str())
        .bind(new.dedupe_key)
        .bind(new.undoes.map(|u| u.to_string()))
        .bind(now)
        .bind(queued_at)
        .bind(new.expires_at)
        .bind(new.requestor_identity)
        .execute(&mut *tx)
        .await?;
        if let Some(original) = new.undoes {
            sqlx::query("UPDATE actions SET undone_by = $1, updated_at = $2 WHERE id = $3")
                .bind(id.to_string())
                .bind(now)
                .bind(original.to_string())
                .execute(&mut *tx)
                .await?;
        }
        insert_event(&mut tx, id, None, new.status, now, new.requestor, new.comment).await?;
        self.commit_logged(tx).await?;
        let action = self.action(id).await?.ok_or_else(|| corrupt(format!("inserted action {id} vanished")))?;
        Ok((action, true))
    }

    pub async fn action(&self, id: Uuid) -> Result<Option<Action>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM actions WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Take `step` on `id`, with `changes`, and log it. Returns the updated
    /// action, or `None` when it was not where the step starts (someone
    /// else decided first), does not exist, or is not `changes.device`'s.
    pub async fn transition(
        &self,
        id: Uuid,
        step: Step,
        actor: &str,
        comment: &str,
        changes: &Changes<'_>,
    ) -> Result<Option<Action>, StoreError> {
        let moved = self.transition_many(&[id], &[Move { step, actor, comment }], changes).await?;
        if moved.is_empty() {
            Ok(None)
        } else {
            self.action(id).await
        }
    }

    /// [`Store::transition`] for many actions in one transaction (bulk
    /// approval, dispatch to many devices), through one or more chained
    /// steps (`approve` then `queue`), each logged as its own event;
    /// set-based: per 500 ids one SELECT, one UPDATE and one multi-row
    /// INSERT of events. Returns the ids that moved.
    pub async fn transition_many(
        &self,
        ids: &[Uuid],
        path: &[Move<'_>],
        changes: &Changes<'_>,
    ) -> Result<Vec<Uuid>, StoreError> {
        let steps: Vec<Step> = path.iter().map(|m| m.step).collect();
        let (Some(first), Some(last)) = (path.first(), path.last()) else { return Ok(Vec::new()) };
        if !Step::chain(&steps) {
            return Err(StoreError::Corrupt { table: "actions", detail: format!("steps {steps:?} do not chain") });
        }
        let (from, to) = (first.step.from(), last.step.to());
        let now = now_ms();
        let (set_expires, expires) = match changes.expires_at {
            Some(v) => (1i64, v),
            None => (0, None),
        };
        let mut tx = self.begin_write().await?;
        let mut moved = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            // UUIDs and enum names only: safe to inline.
            let list = chunk.iter().map(|id| format!("'{id}'")).collect::<Vec<_>>().join(", ");
            let rows = sqlx::query(&format!(
                "SELECT id, status FROM actions WHERE id IN ({list}) AND status IN ({}) AND ($1 = '' OR device_id = $1)",
                status_list(from)
            ))
            .bind(changes.device.map(|d| d.to_string()).unwrap_or_default())
            .fetch_all(&mut *tx)
            .await?;
            if rows.is_empty() {
                continue;
            }
            let mut these = Vec::with_capacity(rows.len());
            for row in &rows {
                let id = uuid_col(row, "id")?;
                let old: String = row.try_get("status")?;
                these.push((id, ActionStatus::parse(&old).map(|s| s.as_str()).unwrap_or("unknown")));
            }
            let list = these.iter().map(|(id, _)| format!("'{id}'")).collect::<Vec<_>>().join(", ");
            sqlx::query(&format!(
                "UPDATE actions SET status = $1, updated_at = $2, \
                 decided_by = COALESCE($3, decided_by), decision_comment = COALESCE($4, decision_comment), \
                 result = COALESCE($5, result), error = COALESCE($6, error), \
                 failure_reason = COALESCE($7, failure_reason), queued_at = COALESCE($8, queued_at), \
                 expires_at = CASE WHEN $9 = 1 THEN $10 ELSE expires_at END \
                 WHERE id IN ({list})"
            ))
            .bind(to.as_str())
            .bind(now)
            .bind(changes.decided_by)
            .bind(changes.decision_comment)
            .bind(changes.result)
            .bind(changes.error)
            .bind(changes.failure_reason)
            .bind(changes.queued_at)
            .bind(set_expires)
            .bind(expires)
            .execute(&mut *tx)
            .await?;
            // One row per step: old → … → to. $1 = time, then each step's
            // actor and comment.
            let values = these
                .iter()
                .map(|(id, old)| {
                    let mut from = old.to_string();
                    let mut rows = Vec::with_capacity(path.len());
                    for (n, m) in path.iter().enumerate() {
                        let (a, c) = (2 + 2 * n, 3 + 2 * n);
                        let to = m.step.to().as_str();
                        rows.push(format!("('{id}', '{from}', '{to}', $1, ${a}, ${c})"));
                        from = to.to_string();
                    }
                    rows.join(", ")
                })
                .collect::<Vec<_>>()
                .join(", ");
            let insert = format!(
                "INSERT INTO action_events (action_id, from_status, status, at, actor, comment) VALUES {values}"
            );
            let mut query = sqlx::query(&insert).bind(now);
            for m in path {
                query = query.bind(m.actor).bind(m.comment);
            }
            query.execute(&mut *tx).await?;
            moved.extend(these.into_iter().map(|(id, _)| id));
        }
        if moved.is_empty() {
            tx.commit().await?;
        } else {
            self.commit_logged(tx).await?;
        }
        Ok(moved)
    }

    /// Load many actions by id (any order; missing ids are absent).
    pub async fn actions_by_id(&self, ids: &[Uuid]) -> Result<Vec<Action>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let list = chunk.iter().map(|id| format!("'{id}'")).collect::<Vec<_>>().join(", "); // UUIDs: safe to inline
            let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM actions WHERE id IN ({list})"))
                .fetch_all(&self.pool)
                .await?;
            for row in &rows {
                out.push(from_row(row)?);
            }
        }
        Ok(out)
    }

    /// Queued or sent actions of many devices, oldest first.
    /// Queued or running actions of the kinds the coordinator runs itself
    /// (what a restart cut off).
    pub async fn coordinator_actions_pending(&self) -> Result<Vec<Action>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM actions WHERE status IN ('queued', 'running') AND kind IN ({HERE}) \
             ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    pub async fn actions_to_deliver_many(&self, devices: &[Uuid]) -> Result<Vec<Action>, StoreError> {
        let mut out = Vec::new();
        for chunk in devices.chunks(500) {
            let list = chunk.iter().map(|id| format!("'{id}'")).collect::<Vec<_>>().join(", ");
            let rows = sqlx::query(&format!(
                "SELECT {COLUMNS} FROM actions WHERE device_id IN ({list}) AND status IN ('queued', 'sent') \
                 AND kind NOT IN ({HERE}) ORDER BY created_at, id"
            ))
            .fetch_all(&self.pool)
            .await?;
            for row in &rows {
                out.push(from_row(row)?);
            }
        }
        Ok(out)
    }

    /// Record progress of a running action (not a transition: no event).
    pub async fn action_progress(&self, id: Uuid, device: Uuid, phase: &str, percent: u8) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE actions SET progress_phase = $1, progress_percent = $2, updated_at = $3 \
             WHERE id = $4 AND device_id = $5 AND status = 'running'",
        )
        .bind(phase)
        .bind(i64::from(percent))
        .bind(now_ms())
        .bind(id.to_string())
        .bind(device.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Live actions whose deadline passed, in `statuses`.
    pub async fn actions_past_deadline(&self, statuses: &[ActionStatus], now: i64) -> Result<Vec<Action>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM actions WHERE status IN ({}) AND expires_at IS NOT NULL AND expires_at <= $1",
            status_list(statuses)
        ))
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Newest first; `cursor` is `created_at:id` of the last item seen.
    pub async fn actions(
        &self,
        f: &ActionFilter,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<Action>, StoreError> {
        let (c_at, c_id) = super::time_cursor("actions", cursor)?;
        let statuses = if f.statuses.is_empty() { ActionStatus::ALL.to_vec() } else { f.statuses.clone() };
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM actions WHERE status IN ({}) \
             AND ($1 = '' OR device_id = $1) AND ($2 = '' OR kind = $2) AND ($3 = '' OR source = $3) \
             AND created_at >= $4 AND created_at <= $5 \
             AND (created_at, id) < ($6, $7) \
             AND ($9 = '' OR COALESCE(investigation_id, '') = $9) \
             ORDER BY created_at DESC, id DESC LIMIT $8",
            status_list(&statuses)
        ))
        .bind(f.device.map(|d| d.to_string()).unwrap_or_default())
        .bind(f.kind.map(ActionKind::as_str).unwrap_or_default())
        .bind(f.source.map(|s| s.as_str()).unwrap_or_default())
        .bind(f.since.unwrap_or(i64::MIN))
        .bind(f.until.unwrap_or(i64::MAX))
        .bind(c_at)
        .bind(c_id)
        .bind(i64::from(limit) + 1)
        .bind(f.investigation.clone().unwrap_or_default())
        .fetch_all(&self.pool)
        .await?;
        let items = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::of(items, limit, |a| format!("{}:{}", a.created_at, a.id)))
    }

    /// Count of actions by (kind, status), for metrics.
    /// Devices whose latest succeeded isolation, or code restriction, has
    /// not been released by a later succeeded release: what their own
    /// results last said. `only`: just these devices (a page of them);
    /// else the fleet. Devices not contained are absent. The database
    /// does the sums, so only contained devices come back.
    pub async fn containment(&self, only: Option<&[Uuid]>) -> Result<HashMap<Uuid, Containment>, StoreError> {
        if only.is_some_and(|ids| ids.is_empty()) {
            return Ok(HashMap::new());
        }
        // Ids come from Uuids, never from input: safe to inline.
        let among = only
            .map(|ids| {
                let list = ids.iter().map(|id| format!("'{id}'")).collect::<Vec<_>>().join(", ");
                format!("AND device_id IN ({list})")
            })
            .unwrap_or_default();
        let latest = |kind: &str| format!("MAX(CASE WHEN kind = '{kind}' THEN updated_at ELSE 0 END)");
        let (iso, iso_off, rc, rc_off) =
            (latest("isolate"), latest("release_isolation"), latest("restrict_code"), latest("release_code"));
        let rows = sqlx::query(&format!(
            "SELECT device_id, {iso} AS iso, {iso_off} AS iso_off, {rc} AS rc, {rc_off} AS rc_off FROM actions \
             WHERE kind IN ('isolate', 'release_isolation', 'restrict_code', 'release_code') AND status = 'succeeded' \
             {among} GROUP BY device_id HAVING {iso} > {iso_off} OR {rc} > {rc_off}"
        ))
        .fetch_all(&self.pool)
        .await?;
        let mut out = HashMap::with_capacity(rows.len());
        for r in &rows {
            let device: String = r.try_get("device_id")?;
            let Ok(device) = device.parse::<Uuid>() else { continue };
            let at = |c: &str| r.try_get::<i64, _>(c);
            out.insert(
                device,
                Containment { isolated: at("iso")? > at("iso_off")?, restricted: at("rc")? > at("rc_off")? },
            );
        }
        Ok(out)
    }

    /// How many actions are in `status`.
    pub async fn count_actions(&self, status: ActionStatus) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM actions WHERE status = $1")
            .bind(status.as_str())
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }

    pub async fn action_counts(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        let rows = sqlx::query("SELECT kind, status, COUNT(*) AS n FROM actions GROUP BY kind, status")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok((r.try_get("kind")?, r.try_get("status")?, r.try_get("n")?))).collect()
    }
}

async fn insert_event(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    id: Uuid,
    from: Option<ActionStatus>,
    to: ActionStatus,
    at: i64,
    actor: &str,
    comment: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO action_events (action_id, from_status, status, at, actor, comment) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id.to_string())
    .bind(from.map(|s| s.as_str()))
    .bind(to.as_str())
    .bind(at)
    .bind(actor)
    .bind(comment)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_coordinators_own_kinds_are_never_delivered() {
        let here: Vec<String> = picket_common::actions::ActionKind::ALL
            .into_iter()
            .filter(|k| k.on_coordinator())
            .map(|k| format!("'{k}'"))
            .collect();
        assert_eq!(super::HERE, here.join(", "));
    }
}
