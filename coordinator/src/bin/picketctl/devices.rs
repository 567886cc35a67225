//! `devices`, `device-groups` and `audit`.

use crate::output::{all_pages, print_json, print_object, s, seg, table};
use clap::Subcommand;
use picket_coordinator::client::{Client, ClientError};
use serde_json::json;

#[derive(Subcommand)]
pub enum DevicesCmd {
    /// List devices.
    List,
    /// Show one device.
    Show { id: String },
    /// Revoke a device: refuse its certificate and cut its session.
    Revoke { id: String },
    /// Offboard a device now and print a token to clean it up offline
    /// (`picket-agent offboard --token …`).
    OffboardingToken {
        id: String,
        #[arg(long, default_value_t = 24)]
        expires_in_hours: u32,
    },
}

#[derive(Subcommand)]
pub enum GroupsCmd {
    List,
    Create {
        name: String,
        #[arg(long)]
        automation_level: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Change a group's automation level.
    Set {
        name: String,
        #[arg(long)]
        automation_level: String,
    },
    /// Move a device into a group.
    Move {
        device: String,
        #[arg(long)]
        group: String,
    },
}

pub fn devices(client: &Client, cmd: &DevicesCmd, json_out: bool) -> Result<(), ClientError> {
    match cmd {
        DevicesCmd::List => {
            let items = all_pages(client, "/api/v1/devices")?;
            if json_out {
                return print_json(&json!(items));
            }
            table(&["ID", "HOSTNAME", "STATUS", "GROUP", "IP", "OS", "LAST SEEN"], &items, |d| {
                vec![
                    s(&d["id"]),
                    s(&d["hostname"]),
                    s(&d["status"]),
                    s(&d["group"]),
                    s(&d["ip"]),
                    s(&d["os"]),
                    s(&d["last_seen"]),
                ]
            });
        }
        DevicesCmd::Show { id } => {
            let d = client.get(&format!("/api/v1/devices/{}", seg(id)))?;
            if json_out {
                return print_json(&d);
            }
            print_object(&d);
        }
        DevicesCmd::Revoke { id } => {
            let d = client.post(&format!("/api/v1/devices/{}/revoke", seg(id)), &json!({}))?;
            if json_out {
                return print_json(&d);
            }
            println!("device {} ({}) revoked", s(&d["id"]), s(&d["hostname"]));
            if let Some(t) = d["enrollment_token_suspended"].as_str() {
                println!("its enrollment token {t} is suspended (resume it with `picketctl enroll-token resume {t}`)");
            }
        }
        DevicesCmd::OffboardingToken { id, expires_in_hours } => {
            let t = client.post(
                &format!("/api/v1/devices/{}/offboarding-token", seg(id)),
                &json!({ "expires_in_hours": expires_in_hours }),
            )?;
            if json_out {
                return print_json(&t);
            }
            println!("device {} ({}) is offboarded on the coordinator.", s(&t["device_id"]), s(&t["hostname"]));
            println!("token expires at {}. Run on the device (as root):", s(&t["expires_at"]));
            println!("  {}", s(&t["offboard_command"]));
        }
    }
    Ok(())
}

pub fn groups(client: &Client, cmd: &GroupsCmd, json_out: bool) -> Result<(), ClientError> {
    let r = match cmd {
        GroupsCmd::List => {
            let r = client.get("/api/v1/device-groups")?;
            let items = r["items"].as_array().cloned().unwrap_or_default();
            if json_out {
                return print_json(&json!(items));
            }
            table(&["NAME", "AUTOMATION", "DESCRIPTION"], &items, |g| {
                vec![s(&g["name"]), s(&g["automation_level"]), s(&g["description"])]
            });
            return Ok(());
        }
        GroupsCmd::Create { name, automation_level, description } => client.post(
            "/api/v1/device-groups",
            &json!({ "name": name, "automation_level": automation_level, "description": description }),
        )?,
        GroupsCmd::Set { name, automation_level } => client
            .patch(&format!("/api/v1/device-groups/{}", seg(name)), &json!({ "automation_level": automation_level }))?,
        GroupsCmd::Move { device, group } => {
            client.patch(&format!("/api/v1/devices/{}", seg(device)), &json!({ "group": group }))?
        }
    };
    if json_out {
        return print_json(&r);
    }
    print_object(&r);
    Ok(())
}

pub fn audit(client: &Client, limit: u32, json_out: bool) -> Result<(), ClientError> {
    let page = client.get(&format!("/api/v1/audit?limit={}", limit.clamp(1, 1000)))?;
    let items = page["items"].as_array().cloned().unwrap_or_default();
    if json_out {
        return print_json(&json!(items));
    }
    table(&["AT", "ACTOR", "ACTION", "TARGET", "RESULT", "DETAIL"], &items, |e| {
        vec![s(&e["at"]), s(&e["actor"]), s(&e["action"]), s(&e["target"]), s(&e["result"]), s(&e["detail"])]
    });
    Ok(())
}
