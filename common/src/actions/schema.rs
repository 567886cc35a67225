//! JSON Schemas of each kind's parameters for the coordinator's OpenAPI
//! document (feature `openapi`): the shapes derived from the types in
//! [`super::params`], plus the rules [`check`] enforces across fields, so a
//! request that matches the schema is one `check` accepts.

use serde_json::{json, Value};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::PartialSchema;

use super::mail::{BlockUrl, MailMessages, MailSearch, MailUsers, QuarantineAttachment, RestoreEmail, UnblockUrl};
use super::params::*;
use super::ActionKind;

/// An absolute path (schema only).
pub struct AbsolutePath;

impl PartialSchema for AbsolutePath {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new().schema_type(Type::String).pattern(Some("^/")).into()
    }
}

impl utoipa::ToSchema for AbsolutePath {}

/// A SHA-256 in hex, either case (schema only).
pub struct Sha256Hex;

impl PartialSchema for Sha256Hex {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new().schema_type(Type::String).pattern(Some("^[0-9a-fA-F]{64}$")).into()
    }
}

impl utoipa::ToSchema for Sha256Hex {}

fn derived<T: PartialSchema>() -> Value {
    serde_json::to_value(T::schema()).unwrap_or(Value::Null)
}

fn with(base: Value, rule: Value) -> Value {
    json!({ "allOf": [base, rule] })
}

/// A property present with a non-null value.
fn given(name: &str, type_: &str) -> Value {
    json!({ "required": [name], "properties": { name: { "type": type_ } } })
}

/// The schema of `kind`'s parameters.
pub fn of(kind: ActionKind) -> Value {
    use ActionKind as K;
    let absent = |name: &str| json!({ "properties": { name: { "type": "null" } } });
    match kind {
        K::KillProcess => {
            with(derived::<KillProcess>(), json!({ "anyOf": [given("pid", "integer"), given("sha256", "string")] }))
        }
        K::Isolate => with(
            derived::<Isolate>(),
            json!({ "anyOf": [
                { "required": ["mode"], "properties": { "mode": { "const": "selective" } } },
                { "properties": {
                    "exclusions": { "maxItems": 0 },
                    "allow_dns": { "const": false },
                    "allow_dhcp": { "const": false } } }
            ] }),
        ),
        K::ReleaseIsolation | K::ReleaseCode => derived::<Release>(),
        K::CollectPackage | K::Offboard => derived::<Nothing>(),
        K::Scan => derived::<Scan>(),
        K::RequestSample => derived::<RequestSample>(),
        K::CollectEvidence => derived::<CollectEvidence>(),
        K::StopAndQuarantine => with(
            derived::<Quarantine>(),
            json!({ "anyOf": [
                { "allOf": [given("path", "string"), absent("sha256")] },
                { "allOf": [given("sha256", "string"), absent("path")] }
            ] }),
        ),
        K::DeleteFile => with(derived::<Quarantine>(), json!({ "allOf": [given("path", "string"), absent("sha256")] })),
        K::ReleaseFromQuarantine => {
            with(derived::<ReleaseFromQuarantine>(), json!({ "properties": { "quarantine_id": { "minItems": 1 } } }))
        }
        K::RemovePersistence => derived::<RemovePersistence>(),
        K::RestorePersistence => derived::<RestorePersistence>(),
        K::RestrictCode => derived::<RestrictCode>(),
        K::MailSearch => {
            let criteria = [
                "from",
                "recipient",
                "subject",
                "message_id",
                "since",
                "before",
                "url",
                "attachment_name",
                "attachment_sha256",
            ];
            let any: Vec<Value> = criteria.iter().map(|c| given(c, "string")).collect();
            let user = "^[A-Za-z0-9._@+=][A-Za-z0-9._@+=-]{0,254}$";
            with(
                derived::<MailSearch>(),
                json!({ "properties": { "users": { "items": { "pattern": user } } }, "anyOf": any }),
            )
        }
        K::SoftDeleteEmail | K::MoveToJunk | K::MoveToInbox | K::QuarantineEmail | K::HardDeleteEmail | K::MailScan => {
            with(
                derived::<MailMessages>(),
                json!({ "anyOf": [
                { "required": ["messages"], "properties": { "messages": { "minItems": 1 }, "search": { "type": "null" } } },
                { "required": ["search"], "properties": { "search": of(K::MailSearch), "messages": { "maxItems": 0 } } }
            ] }),
            )
        }
        K::RestoreEmail | K::ReleaseEmail | K::RestoreForwarding => derived::<RestoreEmail>(),
        K::MailForwarding | K::DisableExternalForwarding => {
            let user = "^[A-Za-z0-9._@+=][A-Za-z0-9._@+=-]{0,254}$";
            with(derived::<MailUsers>(), json!({ "properties": { "users": { "items": { "pattern": user } } } }))
        }
        K::BlockUrl => with(
            derived::<BlockUrl>(),
            json!({ "anyOf": [
                { "required": ["match_type"], "properties": {
                    "match_type": { "const": "domain" },
                    "expires_at": { "minimum": 1 },
                    "value": { "maxLength": 253,
                        "pattern": "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$" } } },
                { "properties": {
                    "match_type": { "enum": ["exact", "prefix"] },
                    "expires_at": { "minimum": 1 },
                    "value": { "pattern": "^[hH][tT][tT][pP][sS]?://[^\\s\\x00-\\x1f\\x7f-\\x9f]+$" } } }
            ] }),
        ),
        K::UnblockUrl => derived::<UnblockUrl>(),
        K::QuarantineAttachment => {
            let hex = "^[0-9a-f]{64}$";
            let name = "^[^\\x00-\\x1f\\x7f-\\x9f]{1,255}$";
            with(
                derived::<QuarantineAttachment>(),
                json!({ "properties": {
                    "sha256": { "items": { "pattern": hex } },
                    "names": { "items": { "pattern": name } }
                } }),
            )
        }
    }
}
