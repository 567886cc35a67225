//! `/devices/{id}/actions` and `/actions`: the action center.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use picket_common::actions::ActionKind;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{parse_uuid, ApiError, AppState, AuditDetail, Body, Caller, Params};
use crate::actions::{ActionError, Request};
use crate::clock::rfc3339;
use crate::store::{Action, ActionFilter, ActionSource, ActionStatus, Role};
use crate::views::action_json;

impl From<ActionError> for ApiError {
    fn from(e: ActionError) -> Self {
        match e {
            ActionError::Invalid(m) => ApiError::BadRequest(m),
            ActionError::Forbidden(m) => ApiError::Forbidden(m),
            ActionError::NotFound(m) => ApiError::NotFound(m),
            ActionError::Conflict(m) => ApiError::Conflict(m),
            ActionError::Store(e) => ApiError::internal(e),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAction {
    pub kind: String,
    #[serde(default = "empty_object")]
    pub params: Value,
    #[serde(default)]
    pub comment: String,
    /// Refused when present: the source comes from the credential.
    #[serde(default)]
    pub source: Option<Value>,
}

fn empty_object() -> Value {
    json!({})
}

fn with_audit(mut response: Response, detail: String) -> Response {
    response.extensions_mut().insert(AuditDetail(detail));
    response
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(device): Path<String>,
    Body(req): Body<CreateAction>,
) -> Result<Response, ApiError> {
    caller.require(Role::Responder)?;
    let device = parse_uuid(&device)?;
    let kind = ActionKind::parse(&req.kind).ok_or_else(|| {
        let known: Vec<_> = ActionKind::ALL.iter().map(|k| k.as_str()).collect();
        ApiError::BadRequest(format!("unknown kind {:?}; kinds: {}", req.kind, known.join(", ")))
    })?;
    if req.source.is_some() {
        return Err(ApiError::BadRequest(
            "source is not accepted: it comes from the credential (a person's token: manual_device_action or \
             live_response; an integration's token: api)"
                .into(),
        ));
    }
    let who = caller.requestor();
    let source = who.source_for(kind);
    let (action, created) = state
        .actions
        .create(
            &who,
            Request {
                device,
                kind,
                params: req.params,
                comment: &req.comment,
                source,
                investigation_id: None,
                needs_approval: false,
                undoes: None,
            },
        )
        .await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    let detail = format!("action={} kind={kind} device={device} created={created}", action.id);
    Ok(with_audit((status, Json(action_json(&action))).into_response(), detail))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListActions {
    /// Comma-separated statuses; `pending_approval` is the pending tab.
    pub status: Option<String>,
    pub device: Option<String>,
    pub kind: Option<String>,
    pub source: Option<String>,
    /// RFC 3339 bounds on created_at.
    pub since: Option<String>,
    pub until: Option<String>,
    pub investigation: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

fn parse_time(s: &str) -> Result<i64, ApiError> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|_| ApiError::BadRequest(format!("{s:?} is not an RFC 3339 time")))?;
    Ok(crate::clock::unix_ms(t))
}

impl ListActions {
    fn filter(&self) -> Result<ActionFilter, ApiError> {
        let statuses = match &self.status {
            None => Vec::new(),
            Some(s) => s
                .split(',')
                .map(|x| {
                    ActionStatus::parse(x.trim()).ok_or_else(|| ApiError::BadRequest(format!("unknown status {x:?}")))
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(ActionFilter {
            investigation: self.investigation.as_deref().map(parse_uuid).transpose()?.map(|u| u.to_string()),
            statuses,
            device: self.device.as_deref().map(parse_uuid).transpose()?,
            kind: self
                .kind
                .as_deref()
                .map(|k| ActionKind::parse(k).ok_or_else(|| ApiError::BadRequest(format!("unknown kind {k:?}"))))
                .transpose()?,
            source: self
                .source
                .as_deref()
                .map(|s| ActionSource::parse(s).ok_or_else(|| ApiError::BadRequest(format!("unknown source {s:?}"))))
                .transpose()?,
            since: self.since.as_deref().map(parse_time).transpose()?,
            until: self.until.as_deref().map(parse_time).transpose()?,
        })
    }

    fn limit(&self) -> Result<u32, ApiError> {
        super::page_limit(self.limit)
    }
}

fn bad_cursor(c: Option<&str>) -> Result<(), ApiError> {
    match c {
        Some(c) if c.split_once(':').and_then(|(at, _)| at.parse::<i64>().ok()).is_none() => {
            Err(ApiError::BadRequest(format!("bad cursor {c:?}")))
        }
        _ => Ok(()),
    }
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<ListActions>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Viewer)?;
    bad_cursor(q.cursor.as_deref())?;
    let page = state.store.actions(&q.filter()?, q.cursor.as_deref(), q.limit()?).await?;
    Ok(super::page(page.items.iter().map(action_json).collect::<Vec<_>>(), page.next_cursor))
}

pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Viewer)?;
    let id = parse_uuid(&id)?;
    let action = state.actions.get(id).await?;
    let mut body = action_json(&action);
    let timeline: Vec<Value> = state
        .store
        .action_events(id)
        .await?
        .iter()
        .map(|e| json!({ "at": rfc3339(e.at), "from": e.from_status, "to": e.status, "actor": e.actor, "comment": e.comment }))
        .collect();
    body["timeline"] = json!(timeline);
    Ok(Json(body))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    #[serde(default)]
    pub comment: String,
}

fn decided(action: &Action, verb: &str) -> Response {
    with_audit(Json(action_json(action)).into_response(), format!("action={} {verb} kind={}", action.id, action.kind))
}

pub async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(d): Body<Decision>,
) -> Result<Response, ApiError> {
    let a = state.actions.approve(&caller.requestor(), parse_uuid(&id)?, &d.comment).await?;
    Ok(decided(&a, "approved"))
}

pub async fn reject(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(d): Body<Decision>,
) -> Result<Response, ApiError> {
    let a = state.actions.reject(&caller.requestor(), parse_uuid(&id)?, &d.comment).await?;
    Ok(decided(&a, "rejected"))
}

pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(d): Body<Decision>,
) -> Result<Response, ApiError> {
    let a = state.actions.cancel(&caller.requestor(), parse_uuid(&id)?, &d.comment).await?;
    Ok(decided(&a, "cancelled"))
}

pub async fn undo(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(d): Body<Decision>,
) -> Result<Response, ApiError> {
    let (a, created) = state.actions.undo(&caller.requestor(), parse_uuid(&id)?, &d.comment).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(with_audit((status, Json(action_json(&a))).into_response(), format!("action={} undo_of={id}", a.id)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkApprove {
    pub ids: Vec<String>,
    #[serde(default)]
    pub comment: String,
}

/// Approve several actions; each gets its own outcome.
pub async fn approve_many(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<BulkApprove>,
) -> Result<Response, ApiError> {
    caller.require(Role::Approver)?;
    if req.ids.is_empty() || req.ids.len() > 10_000 {
        return Err(ApiError::BadRequest("ids must hold 1 to 10000 action ids".into()));
    }
    let mut results = Vec::with_capacity(req.ids.len());
    let mut valid = Vec::with_capacity(req.ids.len());
    for raw in &req.ids {
        match parse_uuid(raw) {
            Ok(id) => valid.push(id),
            Err(e) => results.push(json!({ "id": raw, "ok": false, "error": e.to_string() })),
        }
    }
    let outcomes = state.actions.approve_many(&caller.requestor(), &valid, &req.comment).await?;
    let mut approved = 0;
    for (id, outcome) in valid.iter().zip(outcomes) {
        results.push(match outcome {
            Ok(()) => {
                approved += 1;
                json!({ "id": id, "ok": true, "status": "queued" })
            }
            Err(ActionError::Store(e)) => return Err(ApiError::internal(e)),
            Err(e) => json!({ "id": id, "ok": false, "error": e.to_string() }),
        });
    }
    let detail = format!("approved {approved} of {}", req.ids.len());
    Ok(with_audit(Json(json!({ "items": results, "next_cursor": null })).into_response(), detail))
}

/// History export: every action matching the filters, as CSV.
pub async fn export_csv(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<ListActions>,
) -> Result<Response, ApiError> {
    caller.require(Role::Viewer)?;
    let filter = q.filter()?;
    let mut out = String::from(
        "id,kind,device_id,source,status,requestor,comment,decided_by,decision_comment,params,error,undoes,undone_by,created_at,updated_at\n",
    );
    let mut cursor: Option<String> = None;
    loop {
        let page = state.store.actions(&filter, cursor.as_deref(), 1000).await?;
        for a in &page.items {
            let fields = [
                a.id.to_string(),
                a.kind.to_string(),
                a.device_id.to_string(),
                a.source.as_str().to_string(),
                a.status.as_str().to_string(),
                a.requestor.clone(),
                a.comment.clone(),
                a.decided_by.clone().unwrap_or_default(),
                a.decision_comment.clone().unwrap_or_default(),
                a.params.clone(),
                a.error.clone().unwrap_or_default(),
                a.undoes.map(|u| u.to_string()).unwrap_or_default(),
                a.undone_by.map(|u| u.to_string()).unwrap_or_default(),
                rfc3339(a.created_at),
                rfc3339(a.updated_at),
            ];
            out.push_str(&fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
            out.push('\n');
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], out).into_response())
}

/// RFC 4180 quoting; a leading `=`, `+`, `-`, `@`, TAB or CR is prefixed
/// with `'` so a spreadsheet does not run a comment as a formula (OWASP's
/// CSV injection list: TAB and CR are formula starters too).
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}") } else { s.to_string() };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_fields_are_quoted_and_defused() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
        assert_eq!(csv_field("\t=cmd()"), "'\t=cmd()");
        assert_eq!(csv_field("\r=cmd()"), "\"'\r=cmd()\"");
    }
}
