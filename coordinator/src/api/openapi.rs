//! `GET /openapi.json`: an OpenAPI 3.1 description generated from the route
//! table below. A test calls every listed route on the real router, so the
//! spec cannot name a route that does not exist.

use axum::Json;
use serde_json::{json, Map, Value};

/// (method, path, summary, least role or "none", success status)
pub const ROUTES: &[(&str, &str, &str, &str, u16)] = &[
    ("get", "/health", "Liveness and basic facts", "none", 200),
    ("get", "/openapi.json", "This document", "none", 200),
    ("get", "/api/v1/devices", "List devices", "viewer", 200),
    ("get", "/api/v1/devices/{id}", "Show one device", "viewer", 200),
    ("post", "/api/v1/devices/{id}/revoke", "Revoke a device: refuse its certificate, cut its session", "admin", 200),
    (
        "post",
        "/api/v1/enrollment-tokens",
        "Create an enrollment token (returns the secret and the enroll command once)",
        "admin",
        201,
    ),
    ("get", "/api/v1/enrollment-tokens", "List enrollment tokens", "admin", 200),
    ("delete", "/api/v1/enrollment-tokens/{id}", "Revoke an enrollment token", "admin", 200),
    (
        "post",
        "/api/v1/enrollment-tokens/{id}/resume",
        "Resume a token suspended when a device it enrolled was revoked",
        "admin",
        200,
    ),
    ("post", "/api/v1/api-tokens", "Create an API token for a person or an integration, with a role", "admin", 201),
    ("get", "/api/v1/api-tokens", "List API tokens (never their secrets)", "admin", 200),
    ("delete", "/api/v1/api-tokens/{id}", "Revoke an API token (from its next request)", "admin", 200),
    ("get", "/api/v1/audit", "The audit trail of mutating calls, newest first", "admin", 200),
    ("get", "/metrics", "Prometheus metrics", "none", 200),
    (
        "post",
        "/api/v1/devices/{id}/actions",
        "Request an action on a device (200 with the live one if it already exists)",
        "responder",
        201,
    ),
    (
        "post",
        "/api/v1/devices/{id}/offboarding-token",
        "Offboard a device now and get a token to clean it up offline",
        "admin",
        201,
    ),
    ("get", "/api/v1/actions", "List actions (?status=&device=&kind=&source=&since=&until=)", "viewer", 200),
    ("get", "/api/v1/actions.csv", "Export action history as CSV", "viewer", 200),
    ("post", "/api/v1/actions/approve", "Approve several pending actions", "approver", 200),
    ("get", "/api/v1/actions/{id}", "Show an action with its timeline", "viewer", 200),
    ("post", "/api/v1/actions/{id}/approve", "Approve a pending action", "approver", 200),
    ("post", "/api/v1/actions/{id}/reject", "Reject a pending action", "approver", 200),
    ("post", "/api/v1/actions/{id}/cancel", "Cancel a queued or sent action", "responder", 200),
    (
        "post",
        "/api/v1/actions/{id}/undo",
        "Undo a succeeded action whose kind has an inverse (isolate, restrict_code, stop_and_quarantine, delete_file, remove_persistence)",
        "responder",
        201,
    ),
    (
        "post",
        "/api/v1/rules",
        "Upload a rule bundle (compiled on upload; errors per file; 422 if no file compiles)",
        "admin",
        201,
    ),
    ("get", "/api/v1/rules", "List rule bundles, the current one first", "viewer", 200),
    ("post", "/api/v1/indicators", "Add or replace a SHA-256 indicator (block or allow)", "approver", 201),
    ("get", "/api/v1/indicators", "List indicators in force (?all=true: expired too)", "viewer", 200),
    ("delete", "/api/v1/indicators/{sha256}", "Delete an indicator", "approver", 200),
    ("patch", "/api/v1/devices/{id}", "Move a device to another group ({\"group\"})", "admin", 200),
    ("post", "/api/v1/devices/{id}/investigations", "Start an investigation of a file on a device", "responder", 201),
    ("get", "/api/v1/device-groups", "List device groups and their automation levels", "viewer", 200),
    ("post", "/api/v1/device-groups", "Create a device group with an automation level", "admin", 201),
    ("patch", "/api/v1/device-groups/{id}", "Change a group's automation level or description", "admin", 200),
    ("get", "/api/v1/investigations", "List investigations (?status=&device=)", "viewer", 200),
    ("get", "/api/v1/investigations/{id}", "An investigation: evidence, verdicts, actions, timeline", "viewer", 200),
    (
        "post",
        "/api/v1/investigations/{id}/terminate",
        "Terminate an investigation; what has not run is cancelled",
        "responder",
        200,
    ),
    (
        "post",
        "/api/v1/investigations/{id}/approve-expansion",
        "Approve expanding an investigation to 10 or more devices",
        "approver",
        200,
    ),
    ("get", "/api/v1/samples", "List collected samples", "viewer", 200),
    (
        "get",
        "/api/v1/actions/{id}/package",
        "Download the investigation package of a collect_package action (Range supported)",
        "responder",
        200,
    ),
    (
        "get",
        "/api/v1/samples/{sha256}",
        "Download a sample as a ZIP encrypted with the password 'infected'",
        "responder",
        200,
    ),
    ("get", "/api/v1/alerts", "List alerts (?status=&device=&severity=&sha256=)", "viewer", 200),
    ("get", "/api/v1/alerts/{id}", "Show an alert with its history", "viewer", 200),
    (
        "post",
        "/api/v1/alerts/{id}/classify",
        "Classify an alert; false_positive undoes its actions, allows the file and suppresses it (approver)",
        "responder",
        200,
    ),
    ("patch", "/api/v1/alerts/{id}", "Set an alert's status (new, in_progress, resolved)", "responder", 200),
];

pub async fn spec() -> Json<Value> {
    Json(document())
}

pub fn document() -> Value {
    let mut paths = Map::new();
    for (method, path, summary, role, status) in ROUTES {
        let mut op = json!({
            "summary": summary,
            "x-picket-role": role,
            "responses": {
                status.to_string(): { "description": "success" },
                "400": { "$ref": "#/components/responses/Error" },
                "401": { "$ref": "#/components/responses/Error" },
                "403": { "$ref": "#/components/responses/Error" },
                "404": { "$ref": "#/components/responses/Error" },
            }
        });
        if *role == "none" {
            op["security"] = json!([]);
        }
        if let Some(name) = path.split_once('{').and_then(|(_, rest)| rest.split_once('}')).map(|(n, _)| n) {
            op["parameters"] =
                json!([{ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }]);
        }
        if *method == "get" && path.starts_with("/api/v1/") && !path.contains('{') {
            op["parameters"] = json!([
                { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 1000 } },
                { "name": "cursor", "in": "query", "schema": { "type": "string" } }
            ]);
        }
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[*method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": { "title": "Picket coordinator API", "version": env!("CARGO_PKG_VERSION") },
        "paths": paths,
        "security": [{ "bearer": [] }],
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "responses": {
                "Error": {
                    "description": "error",
                    "content": { "application/json": { "schema": {
                        "type": "object",
                        "properties": { "error": { "type": "object", "properties": {
                            "code": { "type": "string" }, "message": { "type": "string" } } } }
                    } } }
                }
            }
        }
    })
}
