//! `users`: the named people who sign in to the console.

use std::io::{BufRead, IsTerminal};

use crate::output::{print_json, s, seg, table};
use clap::Subcommand;
use picket_coordinator::client::{Client, ClientError};
use serde_json::{json, Value};

#[derive(Subcommand)]
pub enum UsersCmd {
    /// Create a user. The password is read from stdin with
    /// --password-stdin, or generated and printed once.
    Create {
        name: String,
        /// viewer, responder, approver or admin.
        #[arg(long)]
        role: String,
        /// Read the password from the first line of stdin (at least 12
        /// characters).
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List,
    /// Disable a user: no sign-in, and their console sessions end now.
    Disable { name: String },
    /// Enable a disabled user.
    Enable { name: String },
    /// Set a new password (from stdin with --password-stdin, or generated
    /// and printed once); the user's console sessions end.
    ResetPassword {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
}

/// The first line of stdin, without its line end.
fn password_from_stdin() -> Result<String, ClientError> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("password: ");
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line).map_err(|e| ClientError::Local(format!("reading the password: {e}")))?;
    let password = line.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        return Err(ClientError::Local("no password on stdin".into()));
    }
    Ok(password)
}

fn print_user(u: &Value, json_out: bool) -> Result<(), ClientError> {
    if json_out {
        return print_json(u);
    }
    println!("user:  {}", s(&u["name"]));
    println!("role:  {}", s(&u["role"]));
    println!("state: {}", s(&u["state"]));
    if let Some(p) = u["password"].as_str() {
        println!("password: {p}");
        println!("(the password is shown only once)");
    }
    Ok(())
}

pub fn run(client: &Client, cmd: &UsersCmd, json_out: bool) -> Result<(), ClientError> {
    match cmd {
        UsersCmd::Create { name, role, password_stdin } => {
            let mut body = json!({ "name": name, "role": role });
            if *password_stdin {
                body["password"] = json!(password_from_stdin()?);
            }
            print_user(&client.post("/api/v1/users", &body)?, json_out)
        }
        UsersCmd::List => {
            let u = client.get("/api/v1/users")?;
            let items = u["items"].as_array().cloned().unwrap_or_default();
            if json_out {
                return print_json(&json!(items));
            }
            table(&["NAME", "ROLE", "STATE", "PASSWORD CHANGED", "CREATED BY"], &items, |u| {
                vec![s(&u["name"]), s(&u["role"]), s(&u["state"]), s(&u["password_changed_at"]), s(&u["created_by"])]
            });
            Ok(())
        }
        UsersCmd::Disable { name } => {
            print_user(&client.post(&format!("/api/v1/users/{}/disable", seg(name)), &json!({}))?, json_out)
        }
        UsersCmd::Enable { name } => {
            print_user(&client.post(&format!("/api/v1/users/{}/enable", seg(name)), &json!({}))?, json_out)
        }
        UsersCmd::ResetPassword { name, password_stdin } => {
            let mut body = json!({});
            if *password_stdin {
                body["password"] = json!(password_from_stdin()?);
            }
            print_user(&client.post(&format!("/api/v1/users/{}/reset-password", seg(name)), &body)?, json_out)
        }
    }
}
