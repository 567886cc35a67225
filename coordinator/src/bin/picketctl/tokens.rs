//! `enroll-token` and `api-token`.

use crate::output::{all_pages, print_json, s, seg, table};
use clap::{Args, Subcommand};
use picket_coordinator::client::{Client, ClientError};
use serde_json::json;

#[derive(Subcommand)]
pub enum EnrollTokenCmd {
    /// Create a token and print the command to run on the device.
    Create(CreateToken),
    /// List tokens.
    List,
    /// Revoke a token by id.
    Revoke { id: String },
    /// Let a token suspended by a device's revocation enroll devices again.
    Resume { id: String },
}

#[derive(Args)]
pub struct CreateToken {
    /// Device group the enrolled devices join.
    #[arg(long, default_value = "default")]
    group: String,
    /// Hours until the token expires.
    #[arg(long, default_value_t = 24)]
    expires_in_hours: u32,
    /// How many devices may enroll with it.
    #[arg(long, default_value_t = 1)]
    max_uses: u32,
}

#[derive(Subcommand)]
pub enum ApiTokenCmd {
    /// Create an API token (the secret is shown once).
    Create {
        #[arg(long)]
        name: String,
        /// viewer, responder, approver or admin.
        #[arg(long)]
        role: String,
        /// The person it is for (default: its name); the two-person rule
        /// counts all tokens of one person as that person.
        #[arg(long)]
        user: Option<String>,
        /// A token for an integration (its actions' source is `api`).
        #[arg(long)]
        integration: bool,
        /// Days until it stops working (default: never).
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by id (refused from its next request on).
    Revoke { id: String },
}

pub fn enroll_token(client: &Client, cmd: &EnrollTokenCmd, json_out: bool) -> Result<(), ClientError> {
    match cmd {
        EnrollTokenCmd::Create(c) => {
            let body = json!({ "group": c.group, "expires_in_hours": c.expires_in_hours, "max_uses": c.max_uses });
            let t = client.post("/api/v1/enrollment-tokens", &body)?;
            if json_out {
                return print_json(&t);
            }
            println!("token:          {}", s(&t["token"]));
            println!("id:             {}", s(&t["id"]));
            println!("group:          {}", s(&t["group"]));
            println!("expires at:     {}", s(&t["expires_at"]));
            println!("uses left:      {}", s(&t["uses_left"]));
            println!("CA fingerprint: {}", s(&t["ca_fingerprint"]));
            println!();
            println!("Run on the device (as root):");
            println!("  {}", s(&t["enroll_command"]));
        }
        EnrollTokenCmd::List => {
            let items = all_pages(client, "/api/v1/enrollment-tokens")?;
            if json_out {
                return print_json(&json!(items));
            }
            table(&["ID", "GROUP", "STATE", "USES LEFT", "EXPIRES", "CREATED BY"], &items, |t| {
                vec![
                    s(&t["id"]),
                    s(&t["group"]),
                    s(&t["state"]),
                    s(&t["uses_left"]),
                    s(&t["expires_at"]),
                    s(&t["created_by"]),
                ]
            });
        }
        EnrollTokenCmd::Revoke { id } => {
            let t = client.delete(&format!("/api/v1/enrollment-tokens/{}", seg(id)))?;
            if json_out {
                return print_json(&t);
            }
            println!("enrollment token {} revoked", s(&t["id"]));
        }
        EnrollTokenCmd::Resume { id } => {
            let t = client.post(&format!("/api/v1/enrollment-tokens/{}/resume", seg(id)), &json!({}))?;
            if json_out {
                return print_json(&t);
            }
            println!("enrollment token {} can enroll devices again ({})", s(&t["id"]), s(&t["state"]));
        }
    }
    Ok(())
}

pub fn api_token(client: &Client, cmd: &ApiTokenCmd, json_out: bool) -> Result<(), ClientError> {
    match cmd {
        ApiTokenCmd::Create { name, role, user, integration, expires_in_days } => {
            let mut body = json!({ "name": name, "role": role });
            if let Some(u) = user {
                body["user"] = json!(u);
            }
            if *integration {
                body["kind"] = json!("integration");
            }
            if let Some(d) = expires_in_days {
                body["expires_in_days"] = json!(d);
            }
            let t = client.post("/api/v1/api-tokens", &body)?;
            if json_out {
                return print_json(&t);
            }
            println!("token:   {}", s(&t["token"]));
            println!("id:      {}", s(&t["id"]));
            println!("name:    {}", s(&t["name"]));
            println!("user:    {}", s(&t["user"]));
            println!("kind:    {}", s(&t["kind"]));
            println!("role:    {}", s(&t["role"]));
            println!("expires: {}", s(&t["expires_at"]));
            println!("(the token is shown only once)");
        }
        ApiTokenCmd::List => {
            let t = client.get("/api/v1/api-tokens")?;
            let items = t["items"].as_array().cloned().unwrap_or_default();
            if json_out {
                return print_json(&json!(items));
            }
            table(&["ID", "NAME", "USER", "KIND", "ROLE", "STATE", "EXPIRES", "CREATED BY"], &items, |t| {
                vec![
                    s(&t["id"]),
                    s(&t["name"]),
                    s(&t["user"]),
                    s(&t["kind"]),
                    s(&t["role"]),
                    s(&t["state"]),
                    s(&t["expires_at"]),
                    s(&t["created_by"]),
                ]
            });
        }
        ApiTokenCmd::Revoke { id } => {
            let t = client.delete(&format!("/api/v1/api-tokens/{}", seg(id)))?;
            if json_out {
                return print_json(&t);
            }
            println!("API token {} ({}) revoked", s(&t["id"]), s(&t["name"]));
        }
    }
    Ok(())
}
