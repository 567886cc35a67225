//! `mail`: the mail explorer (search every mail host, see the clusters).

use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use picket_coordinator::client::{Client, ClientError};
use serde_json::{json, Map, Value};

use crate::output::{print_json, s, seg, table};

#[derive(Subcommand)]
pub enum MailCmd {
    /// Search the mailboxes of every mail host (or --device ones) and show
    /// the clusters once every host answered (or --timeout passed).
    Search {
        #[command(flatten)]
        criteria: Box<Criteria>,
        /// Only this mail host (repeatable).
        #[arg(long = "device")]
        devices: Vec<String>,
        #[command(flatten)]
        view: View,
        /// Seconds to wait for the hosts' answers.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// The clusters of an earlier search.
    Show {
        id: String,
        #[command(flatten)]
        view: View,
    },
    /// Who forwards mail where on a mail host: the redirects in every
    /// user's Sieve scripts (action mail_forwarding, read-only).
    Forwarding {
        device: String,
        /// Only this user (repeatable).
        #[arg(long = "user")]
        users: Vec<String>,
        /// Only the redirects to outside the host's domains.
        #[arg(long)]
        external: bool,
        /// Why (kept in the action's history).
        #[arg(long, default_value = "who forwards where")]
        comment: String,
    },
    /// The click log of wrapped links, newest first: who opened which
    /// link from which message, and whether it was blocked.
    Clicks {
        /// Only clicks on this exact link.
        #[arg(long)]
        url: Option<String>,
        /// Only clicks by this recipient.
        #[arg(long)]
        recipient: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// The URLs blocked at time of click (per mail host), with their
    /// actions; `picketctl undo ACTION` lifts one.
    BlockedUrls,
}

#[derive(Args)]
pub struct Criteria {
    /// Text in the From header.
    #[arg(long)]
    from: Option<String>,
    /// Text in the To or Cc header.
    #[arg(long)]
    recipient: Option<String>,
    /// Text in the subject.
    #[arg(long)]
    subject: Option<String>,
    #[arg(long)]
    message_id: Option<String>,
    /// Received on or after this day (YYYY-MM-DD).
    #[arg(long)]
    since: Option<String>,
    /// Received before this day (YYYY-MM-DD).
    #[arg(long)]
    before: Option<String>,
    /// A link (http://…, https://…: exactly it) or a domain (links to it
    /// and its subdomains) in the message's text.
    #[arg(long)]
    url: Option<String>,
    /// An attachment's file name (exact, any case).
    #[arg(long)]
    attachment_name: Option<String>,
    /// An attachment's SHA-256.
    #[arg(long)]
    attachment_sha256: Option<String>,
    /// Report each message's attachments and links (reads every message
    /// found whole; implied by --url and the attachment criteria).
    #[arg(long)]
    content: bool,
    /// Only this mailbox user (repeatable).
    #[arg(long = "user")]
    users: Vec<String>,
    /// Most messages per host (at most 10000).
    #[arg(long, default_value_t = 1000)]
    limit: u32,
}

#[derive(Args)]
pub struct View {
    /// Group by message_id, sender_subject or attachment.
    #[arg(long, default_value = "message_id")]
    by: String,
    #[arg(long, default_value_t = 1)]
    page: u32,
    #[arg(long, default_value_t = 20)]
    per_page: u32,
}

impl Criteria {
    fn json(&self) -> Value {
        let mut c = Map::new();
        let text = [
            ("from", &self.from),
            ("recipient", &self.recipient),
            ("subject", &self.subject),
            ("message_id", &self.message_id),
            ("since", &self.since),
            ("before", &self.before),
            ("url", &self.url),
            ("attachment_name", &self.attachment_name),
            ("attachment_sha256", &self.attachment_sha256),
        ];
        for (k, v) in text {
            if let Some(v) = v {
                c.insert(k.into(), json!(v));
            }
        }
        if !self.users.is_empty() {
            c.insert("users".into(), json!(self.users));
        }
        if self.content {
            c.insert("content".into(), json!(true));
        }
        c.insert("limit".into(), json!(self.limit));
        Value::Object(c)
    }
}

fn show(client: &Client, id: &str, view: &View) -> Result<Value, ClientError> {
    client.get(&format!(
        "/api/v1/mail/searches/{}?by={}&page={}&per_page={}",
        seg(id),
        seg(&view.by),
        view.page,
        view.per_page
    ))
}

/// `mail forwarding`: ask the host, wait for its answer, show each
/// redirect.
fn forwarding(client: &Client, cmd: &MailCmd, json_out: bool) -> Result<(), ClientError> {
    let MailCmd::Forwarding { device, users, external, comment } = cmd else { return Ok(()) };
    let body = json!({ "kind": "mail_forwarding", "params": { "users": users }, "comment": comment });
    let a = client.post(&format!("/api/v1/devices/{}/actions", seg(device)), &body)?;
    let id = s(&a["id"]);
    let mut a = a;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !crate::wait::FINAL.contains(&a["status"].as_str().unwrap_or("")) {
        if Instant::now() > deadline {
            let status = s(&a["status"]).replace('_', " ");
            return Err(ClientError::Local(format!("still {status} after 2 minutes: picketctl actions show {id}")));
        }
        std::thread::sleep(Duration::from_millis(300));
        a = client.get(&format!("/api/v1/actions/{}", seg(&id)))?;
    }
    let result = &a["result"]["output"];
    if a["status"] != "succeeded" {
        let why = a["result"]["error"].as_str().unwrap_or_default();
        return Err(ClientError::Local(format!("action {id} ended {}: {why}", s(&a["status"]))));
    }
    if json_out {
        return print_json(result);
    }
    let mut rows = Vec::new();
    for script in result["scripts"].as_array().into_iter().flatten() {
        if let Some(e) = script["error"].as_str() {
            rows.push(json!([script["user"], script["script"], script["active"], "", "", format!("unreadable: {e}")]));
        }
        for r in script["redirects"].as_array().into_iter().flatten() {
            if *external && r["external"] != true {
                continue;
            }
            let to = r["address"].as_str().unwrap_or("(known only at delivery)");
            let kind = if r["external"] == true { "external" } else { "internal" };
            let copy = if r["copy"] == true { "copy" } else { "" };
            rows.push(json!([script["user"], script["script"], script["active"], to, copy, kind]));
        }
    }
    println!("{} users, {} scripts read", result["users"], result["scripts_read"]);
    table(&["USER", "SCRIPT", "ACTIVE", "FORWARDS TO", "COPY", ""], &rows, |r| (0..6).map(|i| s(&r[i])).collect());
    Ok(())
}

pub fn run(client: &Client, cmd: &MailCmd, json_out: bool) -> Result<(), ClientError> {
    let (result, view) = match cmd {
        MailCmd::Forwarding { .. } => return forwarding(client, cmd, json_out),
        MailCmd::Clicks { url, recipient, limit } => {
            let mut path = format!("/api/v1/mail/clicks?limit={limit}");
            if let Some(u) = url {
                path.push_str(&format!("&url={}", seg(u)));
            }
            if let Some(r) = recipient {
                path.push_str(&format!("&recipient={}", seg(r)));
            }
            let page = client.get(&path)?;
            if json_out {
                return print_json(&page);
            }
            let items = page["items"].as_array().cloned().unwrap_or_default();
            table(&["AT", "VERDICT", "RECIPIENT", "URL", "MESSAGE-ID", "HOST"], &items, |c| {
                ["at", "verdict", "recipient", "url", "message_id", "device_id"].iter().map(|k| s(&c[*k])).collect()
            });
            return Ok(());
        }
        MailCmd::BlockedUrls => {
            let page = client.get("/api/v1/mail/blocked-urls")?;
            if json_out {
                return print_json(&page);
            }
            let items = page["items"].as_array().cloned().unwrap_or_default();
            table(&["MATCH", "VALUE", "HOST", "EXPIRES", "ACTION", "BY", "COMMENT"], &items, |b| {
                ["match_type", "value", "device_id", "expires_at", "action_id", "created_by", "comment"]
                    .iter()
                    .map(|k| s(&b[*k]))
                    .collect()
            });
            return Ok(());
        }
        MailCmd::Search { criteria, devices, view, timeout } => {
            let mut body = json!({ "criteria": criteria.json() });
            if !devices.is_empty() {
                body["devices"] = json!(devices);
            }
            let created = client.post("/api/v1/mail/searches", &body)?;
            let id = s(&created["id"]);
            if let Some(w) = created["warning"].as_str() {
                eprintln!("{w}");
            }
            let deadline = Instant::now() + Duration::from_secs(*timeout);
            let mut r = show(client, &id, view)?;
            while r["complete"] != json!(true) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(500));
                r = show(client, &id, view)?;
            }
            (r, view)
        }
        MailCmd::Show { id, view } => (show(client, id, view)?, view),
    };
    if json_out {
        return print_json(&result);
    }
    println!("search {}  ({} messages, {} clusters)", s(&result["id"]), result["messages"], result["total_clusters"]);
    let hosts = result["hosts"].as_array().cloned().unwrap_or_default();
    table(&["HOST", "STATUS", "FOUND", "NOTE"], &hosts, |h| {
        let note = match (h["truncated"].as_bool(), h["error"].as_str()) {
            (_, Some(e)) => e.to_string(),
            (Some(true), _) => "more than the limit; narrow the search".into(),
            _ => String::new(),
        };
        vec![s(&h["hostname"]), s(&h["status"]), s(&h["found"]), note]
    });
    if result["complete"] != json!(true) {
        println!("(not every host has answered yet: picketctl mail show {})", s(&result["id"]));
    }
    println!();
    let clusters = result["clusters"].as_array().cloned().unwrap_or_default();
    if view.by == "attachment" {
        table(&["MESSAGES", "MAILBOXES", "ATTACHMENT", "SHA-256", "SUBJECT"], &clusters, |c| {
            let a = &c["attachment"];
            vec![s(&c["messages"]), s(&c["mailboxes"]), s(&a["name"]), s(&a["sha256"]), s(&c["subject"])]
        });
    } else {
        table(&["MESSAGES", "MAILBOXES", "FROM", "SUBJECT", "MESSAGE-ID"], &clusters, |c| {
            vec![s(&c["messages"]), s(&c["mailboxes"]), s(&c["from"]), s(&c["subject"]), s(&c["message_id"])]
        });
    }
    let total = result["total_clusters"].as_u64().unwrap_or(0);
    let shown = u64::from(view.page.saturating_sub(1)) * u64::from(view.per_page) + clusters.len() as u64;
    if shown < total {
        println!("clusters up to {shown} of {total}: --page {} for more", view.page + 1);
    }
    Ok(())
}
