//! `/devices/{id}/actions` and `/actions`: the action center.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use picket_common::actions::ActionKind;
use serde::Deserialize;
use serde_json::{json, Value};

use utoipa::{IntoParams, ToSchema};

use super::{ApiError, AppState, AuditDetail, Body, Caller, Id, Params, TimeCursor};
use crate::actions::{ActionError, Request};
use crate::clock::rfc3339;
use crate::store::{Action, ActionFilter, ActionSource, ActionStatus};
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

/// `POST /devices/{id}/actions`. Its schema in the document is
/// [`create_action_schema`]: one variant per kind, with that kind's
/// parameters.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAction {
    pub kind: ActionKind,
    #[serde(default = "empty_object")]
    pub params: Value,
    /// Why: shown in the action center and the audit trail.
    #[serde(default)]
    pub comment: String,
    /// Refused when present: the source comes from the credential.
    #[serde(default)]
    pub source: Option<Value>,
}

/// The request body's JSON Schema: one variant per kind, each with the
/// parameter schema `picket_common` derives for that kind; `params` may be
/// left out where an empty object is valid.
pub fn create_action_schema() -> Value {
    use picket_common::actions::params;
    let variants: Vec<Value> = ActionKind::ALL
        .iter()
        .map(|&kind| {
            let mut required = vec!["kind", "comment"];
            if params::check(kind, "{}").is_err() {
                required.push("params");
            }
            json!({
                "title": kind.as_str(),
                "type": "object",
                "additionalProperties": false,
                "required": required,
                "properties": {
                    "kind": { "const": kind.as_str() },
                    "params": picket_common::actions::schema::of(kind),
                    "comment": { "type": "string", "pattern": r"[^\s\x00-\x1f\x7f-\x9f]",
                                 "description": "Why: shown in the action center and the audit trail" },
                    "source": { "type": "null", "description": "Refused when given: it comes from the credential" }
                }
            })
        })
        .collect();
    json!({ "oneOf": variants })
}

fn empty_object() -> Value {
    json!({})
}

fn with_audit(mut response: Response, detail: String) -> Response {
    response.extensions_mut().insert(AuditDetail(detail));
    response
}

/// Request an action on a device.
///
/// 201 with the new action, or 200 with the live one if the same action is
/// already pending, queued or running.
#[utoipa::path(post, path = "/api/v1/devices/{id}/actions", tag = "actions",
    security(("bearer" = ["responder"])),
    params(("id" = Uuid, Path, description = "Device id")),
    request_body = CreateAction,
    responses((status = 201, description = "Created", body = Object),
              (status = 200, description = "The same action is already live", body = Object)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Id(device): Id,
    Body(req): Body<CreateAction>,
) -> Result<Response, ApiError> {
    let kind = req.kind;
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

/// The filters of `GET /actions` and `GET /actions.csv`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ActionQuery {
    /// Comma-separated statuses; `pending_approval` is the pending tab.
    #[param(inline)]
    pub status: Option<Statuses>,
    pub device: Option<uuid::Uuid>,
    #[param(inline)]
    pub kind: Option<ActionKind>,
    #[param(inline)]
    pub source: Option<ActionSource>,
    /// Created at or after (RFC 3339).
    #[param(format = DateTime, value_type = Option<String>)]
    pub since: Option<String>,
    /// Created before (RFC 3339).
    #[param(format = DateTime, value_type = Option<String>)]
    pub until: Option<String>,
    pub investigation: Option<uuid::Uuid>,
}

/// `GET /actions`: [`ActionQuery`] and a page (the two are separate
/// types because the CSV export takes no page).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListActions {
    #[param(inline)]
    pub status: Option<Statuses>,
    pub device: Option<uuid::Uuid>,
    #[param(inline)]
    pub kind: Option<ActionKind>,
    #[param(inline)]
    pub source: Option<ActionSource>,
    #[param(format = DateTime, value_type = Option<String>)]
    pub since: Option<String>,
    #[param(format = DateTime, value_type = Option<String>)]
    pub until: Option<String>,
    pub investigation: Option<uuid::Uuid>,
    /// Page size (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    #[param(inline)]
    pub cursor: Option<TimeCursor>,
}

/// Comma-separated action statuses.
#[derive(Debug, Clone, Default)]
pub struct Statuses(Vec<ActionStatus>);

impl<'de> Deserialize<'de> for Statuses {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.split(',')
            .map(|x| ActionStatus::parse(x).ok_or_else(|| serde::de::Error::custom(format!("unknown status {x:?}"))))
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

impl utoipa::PartialSchema for Statuses {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let one = ActionStatus::ALL.map(ActionStatus::as_str).join("|");
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(format!("^({one})(,({one}))*$")))
            .into()
    }
}

impl ToSchema for Statuses {}

fn parse_time(s: &str) -> Result<i64, ApiError> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|_| ApiError::BadRequest(format!("{s:?} is not an RFC 3339 time")))?;
    Ok(crate::clock::unix_ms(t))
}

impl ActionQuery {
    fn filter(self) -> Result<ActionFilter, ApiError> {
        Ok(ActionFilter {
            investigation: self.investigation.map(|u| u.to_string()),
            statuses: self.status.unwrap_or_default().0,
            device: self.device,
            kind: self.kind,
            source: self.source,
            since: self.since.as_deref().map(parse_time).transpose()?,
            until: self.until.as_deref().map(parse_time).transpose()?,
        })
    }
}

impl ListActions {
    fn split(self) -> (ActionQuery, Option<u32>, Option<TimeCursor>) {
        let Self { status, device, kind, source, since, until, investigation, limit, cursor } = self;
        (ActionQuery { status, device, kind, source, since, until, investigation }, limit, cursor)
    }
}

/// List actions, newest first (`pending_approval` is the pending tab).
#[utoipa::path(get, path = "/api/v1/actions", tag = "actions", security(("bearer" = ["viewer"])),
    params(ListActions), responses((status = 200, description = "A page of actions", body = Object)))]
pub async fn list(State(state): State<AppState>, Params(q): Params<ListActions>) -> Result<Json<Value>, ApiError> {
    let (query, limit, cursor) = q.split();
    let limit = super::page_limit(limit)?;
    let page = state.store.actions(&query.filter()?, cursor.as_ref().map(|c| c.0.as_str()), limit).await?;
    Ok(super::page(page.items.iter().map(action_json).collect::<Vec<_>>(), page.next_cursor))
}

/// An action with its timeline.
#[utoipa::path(get, path = "/api/v1/actions/{id}", tag = "actions", security(("bearer" = ["viewer"])),
    params(("id" = Uuid, Path, description = "Action id")),
    responses((status = 200, description = "The action", body = Object)))]
pub async fn show(State(state): State<AppState>, Id(id): Id) -> Result<Json<Value>, ApiError> {
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

/// A decision on an action, with an optional comment.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    #[serde(default)]
    pub comment: String,
}

fn decided(action: &Action, verb: &str) -> Response {
    with_audit(Json(action_json(action)).into_response(), format!("action={} {verb} kind={}", action.id, action.kind))
}

/// Approve a pending action.
#[utoipa::path(post, path = "/api/v1/actions/{id}/approve", tag = "actions", security(("bearer" = ["approver"])),
    params(("id" = Uuid, Path, description = "Action id")), request_body = Decision,
    responses((status = 200, description = "The action after the decision", body = Object)))]
pub async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Body(d): Body<Decision>,
) -> Result<Response, ApiError> {
    let a = state.actions.approve(&caller.requestor(), id, &d.comment).await?;
    Ok(decided(&a, "approved"))
}

/// Reject a pending action.
#[utoipa::path(post, path = "/api/v1/actions/{id}/reject", tag = "actions", security(("bearer" = ["approver"])),
    params(("id" = Uuid, Path, description = "Action id")), request_body = Decision,
    responses((status = 200, description = "The action after the decision", body = Object)))]
pub async fn reject(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Body(d): Body<Decision>,
) -> Result<Response, ApiError> {
    let a = state.actions.reject(&caller.requestor(), id, &d.comment).await?;
    Ok(decided(&a, "rejected"))
}

/// Cancel a queued or sent action.
#[utoipa::path(post, path = "/api/v1/actions/{id}/cancel", tag = "actions", security(("bearer" = ["responder"])),
    params(("id" = Uuid, Path, description = "Action id")), request_body = Decision,
    responses((status = 200, description = "The action after the decision", body = Object)))]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Body(d): Body<Decision>,
) -> Result<Response, ApiError> {
    let a = state.actions.cancel(&caller.requestor(), id, &d.comment).await?;
    Ok(decided(&a, "cancelled"))
}

/// Undo a succeeded action whose kind has an inverse.
///
/// Isolate, restrict_code, stop_and_quarantine, delete_file and
/// remove_persistence can be undone; 201 with the undoing action, 200 if
/// it already exists.
#[utoipa::path(post, path = "/api/v1/actions/{id}/undo", tag = "actions", security(("bearer" = ["responder"])),
    params(("id" = Uuid, Path, description = "Action id")), request_body = Decision,
    responses((status = 201, description = "The undoing action", body = Object),
              (status = 200, description = "The undoing action already exists", body = Object)))]
pub async fn undo(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Body(d): Body<Decision>,
) -> Result<Response, ApiError> {
    let (a, created) = state.actions.undo(&caller.requestor(), id, &d.comment).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(with_audit((status, Json(action_json(&a))).into_response(), format!("action={} undo_of={id}", a.id)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkApprove {
    #[schema(min_items = 1, max_items = 10000)]
    pub ids: Vec<uuid::Uuid>,
    #[serde(default)]
    pub comment: String,
}

/// Approve several pending actions; each gets its own outcome.
#[utoipa::path(post, path = "/api/v1/actions/approve", tag = "actions", security(("bearer" = ["approver"])),
    request_body = BulkApprove, responses((status = 200, description = "One outcome per id", body = Object)))]
pub async fn approve_many(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<BulkApprove>,
) -> Result<Response, ApiError> {
    if req.ids.is_empty() || req.ids.len() > 10_000 {
        return Err(ApiError::BadRequest("ids must hold 1 to 10000 action ids".into()));
    }
    let mut results = Vec::with_capacity(req.ids.len());
    let outcomes = state.actions.approve_many(&caller.requestor(), &req.ids, &req.comment).await?;
    let mut approved = 0;
    for (id, outcome) in req.ids.iter().zip(outcomes) {
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

/// Export action history as CSV: every action matching the filters.
#[utoipa::path(get, path = "/api/v1/actions.csv", tag = "actions", security(("bearer" = ["viewer"])),
    params(ActionQuery),
    responses((status = 200, description = "RFC 4180 CSV", content_type = "text/csv", body = String)))]
pub async fn export_csv(State(state): State<AppState>, Params(q): Params<ActionQuery>) -> Result<Response, ApiError> {
    let out = actions_csv(&state.store, &q.filter()?).await?;
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], out).into_response())
}

/// Every action `filter` matches as RFC 4180 CSV with a header row (the
/// API's export and the console's).
pub async fn actions_csv(
    store: &crate::store::Store,
    filter: &ActionFilter,
) -> Result<String, crate::store::StoreError> {
    let mut out = String::from(
        "id,kind,device_id,source,status,requestor,comment,decided_by,decision_comment,params,error,undoes,undone_by,created_at,updated_at\n",
    );
    let mut cursor: Option<String> = None;
    loop {
        let page = store.actions(filter, cursor.as_deref(), 1000).await?;
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
    Ok(out)
}

/// RFC 4180 quoting; a leading `=`, `+`, `-`, `@`, TAB or CR is prefixed
/// with `'` so a spreadsheet does not run a comment as a formula (OWASP's
/// CSV injection list: TAB and CR are formula starters too).
pub fn csv_field(s: &str) -> String {
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
