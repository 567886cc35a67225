//! `/mail/searches`: the mail explorer. A search is one `mail_search`
//! action per mail host (through the action center: audited, in each
//! host's history); its results are merged and grouped into clusters —
//! the same Message-ID, or the same sender and subject — with where each
//! cluster sits (host, user, folder) and the message references an
//! operator acts on (`soft_delete_email`, `move_to_junk` with `messages`).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
#[cfg(test)]
use picket_common::actions::mail::MessageMeta;
use picket_common::actions::mail::{FoundMessage, MailSearchOutput};
use picket_common::actions::ActionKind;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{ApiError, AppState, Body, Caller, Id, Params};
use crate::actions::Request;
use crate::clock::rfc3339;
use crate::store::{ActionStatus, DeviceQuery, DeviceStatus};

/// `POST /mail/searches`. Its schema in the document is [`create_schema`].
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMailSearch {
    /// `mail_search`'s parameters.
    pub criteria: Value,
    /// The mail hosts to ask (default: every active one).
    #[serde(default)]
    pub devices: Option<Vec<Uuid>>,
    /// Why (default: "mail explorer").
    #[serde(default)]
    pub comment: Option<String>,
}

pub fn create_schema() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["criteria"],
        "properties": {
            "criteria": picket_common::actions::schema::of(ActionKind::MailSearch),
            "devices": { "type": ["array", "null"], "items": { "type": "string", "format": "uuid" }, "maxItems": 1000 },
            "comment": { "type": ["string", "null"], "pattern": r"[^\s\x00-\x1f\x7f-\x9f]" }
        }
    })
}

/// Search the mailboxes of every mail host (or those named).
///
/// 201 with the search: one `mail_search` action per host. Poll
/// `GET /mail/searches/{id}` for the clusters as the hosts answer.
#[utoipa::path(post, path = "/api/v1/mail/searches", tag = "mail", security(("bearer" = ["responder"])),
    request_body = CreateMailSearch,
    responses((status = 201, description = "The search, sent to each mail host", body = Object)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<CreateMailSearch>,
) -> Result<Response, ApiError> {
    let body = start(&state, &caller, req).await?;
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// Start a search as `caller`: one `mail_search` action per mail host.
pub async fn start(state: &AppState, caller: &Caller, req: CreateMailSearch) -> Result<Value, ApiError> {
    if !req.criteria.is_object() {
        return Err(ApiError::BadRequest("criteria must be a JSON object".into()));
    }
    picket_common::actions::params::check(ActionKind::MailSearch, &req.criteria.to_string())
        .map_err(ApiError::BadRequest)?;
    let comment = req.comment.clone().unwrap_or_else(|| "mail explorer".into());
    if !comment.chars().any(|c| !c.is_whitespace() && !c.is_control()) {
        return Err(ApiError::BadRequest("comment is blank: say why, or leave it out".into()));
    }
    let hosts = match &req.devices {
        Some(ids) => {
            // All checked before any is asked: no half-sent search.
            for id in ids {
                let device =
                    state.store.device(*id).await?.ok_or_else(|| ApiError::NotFound(format!("no device {id}")))?;
                if !device.capabilities.iter().any(|c| c == ActionKind::MailSearch.as_str()) {
                    return Err(ApiError::Conflict(format!("{} ({id}) is not a mail host", device.hostname)));
                }
            }
            ids.clone()
        }
        None => {
            let q = DeviceQuery { status: Some(DeviceStatus::Active), ..DeviceQuery::default() };
            let devices = state.store.find_devices(&q).await?;
            let mail = |d: &&crate::store::Device| d.capabilities.iter().any(|c| c == ActionKind::MailSearch.as_str());
            devices.iter().filter(mail).map(|d| d.id).collect()
        }
    };
    let who = caller.requestor();
    let mut actions = Vec::with_capacity(hosts.len());
    for device in hosts {
        let request = Request {
            device,
            kind: ActionKind::MailSearch,
            params: req.criteria.clone(),
            comment: &comment,
            source: who.source_for(ActionKind::MailSearch),
            investigation_id: None,
            needs_approval: false,
            undoes: None,
        };
        let (action, _) = state.actions.create(&who, request).await?;
        actions.push((device, action.id));
    }
    let record = state.store.put_mail_search(&caller.name, &req.criteria.to_string(), &actions).await?;
    Ok(json!({
        "id": record.id,
        "hosts": actions.iter().map(|(d, a)| json!({ "device_id": d, "action_id": a })).collect::<Vec<_>>(),
        "warning": if actions.is_empty() { Some("no enrolled device is a mail host") } else { None },
    }))
}

/// How messages are grouped.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ClusterBy {
    /// The same Message-ID (one message sent to many).
    #[default]
    MessageId,
    /// The same sender and subject (a campaign of distinct messages).
    SenderSubject,
    /// The same attachment (by SHA-256; a message with several is in each
    /// of their clusters, one without any in none). Needs a search that
    /// read content (`content`, `url` or an attachment criterion).
    Attachment,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ShowParams {
    /// How to group (default `message_id`).
    #[serde(default)]
    #[param(inline)]
    pub by: ClusterBy,
    /// Page of clusters, from 1.
    #[serde(default = "first")]
    #[param(minimum = 1, maximum = 100000)]
    pub page: u32,
    /// Clusters per page (default 20, at most 100).
    #[serde(default = "twenty")]
    #[param(minimum = 1, maximum = 100)]
    pub per_page: u32,
}

fn first() -> u32 {
    1
}

fn twenty() -> u32 {
    20
}

/// A search's clusters, largest first, a page at a time; each host's state.
#[utoipa::path(get, path = "/api/v1/mail/searches/{id}", tag = "mail", security(("bearer" = ["viewer"])),
    params(("id" = Uuid, Path, description = "Search id"), ShowParams),
    responses((status = 200, description = "The clusters found so far", body = Object)))]
pub async fn show(
    State(state): State<AppState>,
    Id(id): Id,
    Params(p): Params<ShowParams>,
) -> Result<Json<Value>, ApiError> {
    if !(1..=100).contains(&p.per_page) || !(1..=100_000).contains(&p.page) {
        return Err(ApiError::BadRequest("page is 1..=100000 and per_page 1..=100".into()));
    }
    let (mut body, clusters) = view(&state, id, p.by).await?;
    let start = ((p.page - 1) * p.per_page) as usize;
    let page: Vec<Value> = clusters.into_iter().skip(start).take(p.per_page as usize).collect();
    body["page"] = json!(p.page);
    body["per_page"] = json!(p.per_page);
    body["clusters"] = Value::Array(page);
    Ok(Json(body))
}

/// A search as it stands — its hosts and every cluster, largest first.
pub async fn view(state: &AppState, id: Uuid, by: ClusterBy) -> Result<(Value, Vec<Value>), ApiError> {
    let search =
        state.store.mail_search(id).await?.ok_or_else(|| ApiError::NotFound(format!("no mail search {id}")))?;
    let names = state.store.device_names(&search.actions.iter().map(|(d, _)| *d).collect::<Vec<_>>()).await?;
    let mut hosts = Vec::new();
    let mut found: Vec<(Uuid, FoundMessage)> = Vec::new();
    let mut complete = true;
    for (device, action_id) in &search.actions {
        let action = state.store.action(*action_id).await?;
        let status = action.as_ref().map(|a| a.status).unwrap_or(ActionStatus::Expired);
        let output: Option<MailSearchOutput> =
            action.as_ref().and_then(|a| a.result.as_deref()).and_then(|r| serde_json::from_str(r).ok());
        complete &= !ActionStatus::LIVE.contains(&status);
        hosts.push(json!({
            "device_id": device,
            "hostname": names.get(device),
            "action_id": action_id,
            "status": status.as_str(),
            "found": output.as_ref().map(|o| o.messages.len()),
            "truncated": output.as_ref().map(|o| o.truncated),
            "error": action.as_ref().and_then(|a| a.error.clone()),
        }));
        if let Some(out) = output {
            found.extend(out.messages.into_iter().map(|m| (*device, m)));
        }
    }
    let clusters = cluster(&found, by, &names);
    let body = json!({
        "id": search.id,
        "created_by": search.created_by,
        "created_at": rfc3339(search.created_at),
        "criteria": serde_json::from_str::<Value>(&search.criteria).unwrap_or(Value::Null),
        "complete": complete,
        "hosts": hosts,
        "messages": found.len(),
        "total_clusters": clusters.len(),
    });
    Ok((body, clusters))
}

/// The clusters `m` belongs to.
fn keys(m: &FoundMessage, by: ClusterBy) -> Vec<String> {
    match by {
        ClusterBy::MessageId if !m.message.message_id.trim().is_empty() => {
            vec![m.message.message_id.trim().to_ascii_lowercase()]
        }
        // No Message-ID: a message is its own cluster.
        ClusterBy::MessageId => vec![format!("{}/{}", m.user, m.guid)],
        ClusterBy::SenderSubject => {
            vec![format!("{}\n{}", m.message.from.trim().to_ascii_lowercase(), m.message.subject.trim())]
        }
        ClusterBy::Attachment => {
            let mut hashes: Vec<String> = m.attachments.iter().map(|a| a.sha256.clone()).collect();
            hashes.sort();
            hashes.dedup();
            hashes
        }
    }
}

/// Group `found` into clusters, largest first.
pub fn cluster(
    found: &[(Uuid, FoundMessage)],
    by: ClusterBy,
    names: &std::collections::HashMap<Uuid, String>,
) -> Vec<Value> {
    let mut groups: BTreeMap<String, Vec<&(Uuid, FoundMessage)>> = BTreeMap::new();
    for f in found {
        for key in keys(&f.1, by) {
            groups.entry(key).or_default().push(f);
        }
    }
    let mut clusters: Vec<(usize, String, Value)> = groups
        .into_iter()
        .map(|(key, members)| {
            let first = &members[0].1;
            let mut places: BTreeMap<(Uuid, &str, &str), usize> = BTreeMap::new();
            let mut targets: BTreeMap<Uuid, Vec<Value>> = BTreeMap::new();
            for (device, m) in &members {
                *places.entry((*device, m.user.as_str(), m.mailbox.as_str())).or_default() += 1;
                targets
                    .entry(*device)
                    .or_default()
                    .push(json!({ "user": m.user, "mailbox": m.mailbox, "guid": m.guid }));
            }
            let received = members.iter().map(|(_, m)| m.message.received);
            let users: std::collections::BTreeSet<(Uuid, &str)> =
                members.iter().map(|(d, m)| (*d, m.user.as_str())).collect();
            let attachment = first.attachments.iter().find(|a| by == ClusterBy::Attachment && a.sha256 == key);
            let value = json!({
                "key": key,
                "attachment": attachment,
                "message_id": first.message.message_id,
                "from": first.message.from,
                "subject": first.message.subject,
                "messages": members.len(),
                "mailboxes": users.len(),
                "first_received": received.clone().min(),
                "last_received": received.max(),
                "places": places.iter().map(|((d, user, mailbox), n)| json!({
                    "device_id": d, "hostname": names.get(d), "user": user, "mailbox": mailbox, "count": n
                })).collect::<Vec<_>>(),
                "targets": targets.into_iter().map(|(d, messages)| json!({ "device_id": d, "messages": messages }))
                    .collect::<Vec<_>>(),
            });
            (members.len(), key, value)
        })
        .collect();
    clusters.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    clusters.into_iter().map(|(_, _, v)| v).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(user: &str, id: &str, from: &str, subject: &str) -> FoundMessage {
        FoundMessage {
            user: user.into(),
            mailbox: "INBOX".into(),
            guid: format!("g-{user}-{id}"),
            message: MessageMeta {
                message_id: id.into(),
                from: from.into(),
                subject: subject.into(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn clusters_group_by_message_id_or_by_sender_and_subject_largest_first() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let found = vec![
            (a, m("ann", "<1@x>", "Eve <eve@x>", "Invoice")),
            (a, m("bob", "<1@X>", "Eve <eve@x>", "Invoice")),
            (b, m("cy", "<1@x>", "Eve <eve@x>", "Invoice")),
            (b, m("cy", "<2@x>", "eve <EVE@x>", "Invoice")),
            (a, m("ann", "<3@y>", "hr@y", "Rota")),
        ];
        let names = std::collections::HashMap::new();
        let by_id = cluster(&found, ClusterBy::MessageId, &names);
        assert_eq!(by_id.len(), 3);
        assert_eq!(by_id[0]["messages"], 3);
        assert_eq!(by_id[0]["mailboxes"], 3);
        assert_eq!(by_id[0]["targets"].as_array().map(Vec::len), Some(2), "two hosts");
        let by_sender = cluster(&found, ClusterBy::SenderSubject, &names);
        assert_eq!(by_sender.len(), 2, "{by_sender:?}");
        assert_eq!(by_sender[0]["messages"], 4, "the sender's case does not split a campaign");
    }

    #[test]
    fn clusters_by_attachment_put_a_message_in_each_of_its_attachments_clusters() {
        use picket_common::actions::mail::AttachmentInfo;
        let a = Uuid::new_v4();
        let att = |sha: &str| AttachmentInfo { name: format!("{sha}.exe"), sha256: sha.repeat(64), size: 3 };
        let mut one = m("ann", "<1@x>", "eve@x", "Invoice");
        one.attachments = vec![att("a"), att("b")];
        let mut two = m("bob", "<2@x>", "mallory@y", "Slip");
        two.attachments = vec![att("a")];
        let none = m("cy", "<3@x>", "hr@y", "Rota");
        let found = vec![(a, one), (a, two), (a, none)];
        let by_attachment = cluster(&found, ClusterBy::Attachment, &std::collections::HashMap::new());
        assert_eq!(by_attachment.len(), 2, "{by_attachment:?}");
        assert_eq!(by_attachment[0]["messages"], 2);
        assert_eq!(by_attachment[0]["attachment"]["sha256"], "a".repeat(64));
        assert_eq!(by_attachment[1]["attachment"]["name"], "b.exe");
    }
}
