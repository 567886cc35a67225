//! `GET /openapi.json`: the OpenAPI 3.1 document the handlers' own
//! `#[utoipa::path]` attributes and types generate, and the table of roles
//! read back from it.
//!
//! A route's least role is the scope of its `bearer` security requirement
//! (`security(("bearer" = ["responder"]))`); public routes say
//! `security(())`. [`Roles::of`] refuses a document in which an API route
//! declares no role, an unknown role or more than one, so the coordinator
//! does not start with such a route.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::http::{header, Method};
use axum::response::IntoResponse;
use axum::Extension;
use serde_json::{json, Value};
use utoipa::openapi::OpenApi;

use crate::store::Role;

/// The least role of every API route, keyed by method and path template.
#[derive(Debug)]
pub struct Roles(HashMap<(Method, String), Role>);

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// Every operation of `doc` (as JSON) with its path and method.
fn operations(doc: &Value) -> impl Iterator<Item = (&str, &str, &Value)> {
    doc["paths"]
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(path, item)| METHODS.iter().filter_map(move |m| item.get(*m).map(|op| (path.as_str(), *m, op))))
}

fn to_json(doc: &OpenApi) -> Result<Value, String> {
    serde_json::to_value(doc).map_err(|e| format!("the OpenAPI document cannot be serialized: {e}"))
}

impl Roles {
    /// The roles of the operations of `doc`, each of which must name one.
    pub fn of(doc: &OpenApi) -> Result<Self, String> {
        let doc = to_json(doc)?;
        let mut roles = HashMap::new();
        for (path, method, op) in operations(&doc) {
            let scopes: Vec<&str> = match op["security"].as_array().map(Vec::as_slice) {
                Some([requirement]) => requirement["bearer"]
                    .as_array()
                    .map(|s| s.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default(),
                _ => Vec::new(),
            };
            let role = match scopes.as_slice() {
                [name] => Role::parse(name).ok_or_else(|| format!("{method} {path}: unknown role {name:?}"))?,
                _ => return Err(format!("{method} {path} declares no role (security((\"bearer\" = [ROLE])))")),
            };
            let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).map_err(|e| e.to_string())?;
            roles.insert((method, path.to_string()), role);
        }
        Ok(Self(roles))
    }

    /// Public routes must say so (`security(())`), never by omission.
    pub fn check_public(doc: &OpenApi) -> Result<(), String> {
        let doc = to_json(doc)?;
        for (path, method, op) in operations(&doc) {
            if op["security"] != json!([{}]) {
                return Err(format!("{method} {path} is outside the API but does not declare security(())"));
            }
        }
        Ok(())
    }

    /// The methods the route `path` (its template) has, sorted.
    pub fn methods(&self, path: &str) -> Vec<&str> {
        let mut methods: Vec<&str> = self.0.keys().filter(|(_, p)| p == path).map(|(m, _)| m.as_str()).collect();
        methods.sort_unstable();
        methods
    }

    /// The least role for `method` on the route `path` (its template).
    pub fn get(&self, method: &Method, path: &str) -> Option<Role> {
        // HEAD is answered by the GET handler.
        let method = if method == Method::HEAD { Method::GET } else { method.clone() };
        self.0.get(&(method, path.to_string())).copied()
    }
}

/// What the document says before the routes are added.
pub fn base() -> OpenApi {
    let mut doc = OpenApi::new(
        utoipa::openapi::Info::new("Picket coordinator API", env!("CARGO_PKG_VERSION")),
        utoipa::openapi::Paths::new(),
    );
    doc.info.description = Some(
        "Authentication: `Authorization: Bearer <API token>`. Roles are ordered viewer < responder < approver \
         < admin; each operation's `bearer` scope is the least role that may call it. Errors are \
         `{\"error\":{\"code\",\"message\"}}`."
            .into(),
    );
    doc
}

/// The served document: the generated one with the bearer scheme, the
/// error response every operation may give, and the action request body
/// whose parameters depend on its kind.
pub fn finish(doc: OpenApi) -> Result<Value, String> {
    let mut doc = to_json(&doc)?;
    doc["openapi"] = json!("3.1.0");
    let components = doc.as_object_mut().ok_or("document is not an object")?.entry("components").or_insert(json!({}));
    components["securitySchemes"] = json!({ "bearer": { "type": "http", "scheme": "bearer" } });
    components["responses"] = json!({ "Error": {
        "description": "The request was refused or failed; `message` says why",
        "content": { "application/json": { "schema": {
            "type": "object",
            "required": ["error"],
            "properties": { "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": { "type": "string" },
                    "message": { "type": "string" },
                    "details": {}
                }
            } }
        } } }
    } });
    components["schemas"]["CreateAction"] = super::actions::create_action_schema();
    components["schemas"]["CreateMailSearch"] = super::mail::create_schema();
    let paths = doc["paths"].as_object_mut().ok_or("document has no paths")?;
    for (path, item) in paths.iter_mut() {
        for method in METHODS {
            if let Some(op) = item.get_mut(method) {
                op["responses"]["default"] = json!({ "$ref": "#/components/responses/Error" });
                // Handler names repeat across resources (`list`, `show`):
                // the id is the method and the path.
                op["operationId"] = json!(operation_id(method, path));
            }
        }
    }
    Ok(doc)
}

/// `get /api/v1/actions/{id}/approve` → `get_actions_id_approve`.
fn operation_id(method: &str, path: &str) -> String {
    let words =
        path.trim_start_matches("/api/v1").split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty());
    std::iter::once(method).chain(words).collect::<Vec<_>>().join("_")
}

/// The served document, serialized once at start.
#[derive(Clone)]
pub struct Document(pub Bytes);

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "service", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = Object)))]
pub async fn spec(Extension(doc): Extension<Document>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], doc.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(security: Value) -> OpenApi {
        serde_json::from_value(json!({
            "openapi": "3.1.0",
            "info": { "title": "t", "version": "1" },
            "paths": { "/x": { "get": { "responses": {}, "security": security } } }
        }))
        .expect("document")
    }

    #[test]
    fn a_route_without_exactly_one_known_role_is_refused() {
        let roles = Roles::of(&doc(json!([{ "bearer": ["approver"] }]))).expect("roles");
        assert_eq!(roles.get(&Method::GET, "/x"), Some(Role::Approver));
        assert_eq!(roles.get(&Method::HEAD, "/x"), Some(Role::Approver));
        assert_eq!(roles.get(&Method::POST, "/x"), None);
        for bad in [json!(null), json!([]), json!([{}]), json!([{ "bearer": [] }]), json!([{ "bearer": ["root"] }])] {
            assert!(Roles::of(&doc(bad.clone())).is_err(), "{bad}");
        }
        assert!(Roles::check_public(&doc(json!([{}]))).is_ok());
        assert!(Roles::check_public(&doc(json!(null))).is_err());
    }
}
