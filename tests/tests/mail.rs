//! Email remediation on a real Dovecot (tests/src/dovecot.rs): the agent on
//! the mail host finds a phishing cluster delivered through LMTP, soft
//! deletes it through the action pipeline, and the undo puts each message
//! back with its flags and internal date — all checked through IMAP as the
//! users' mail clients see it.

use picket_agent::mail::MailConfig;
use picket_e2e::dovecot::{self, Dovecot};
use picket_e2e::{eventually, Db, TestEnv};
use serde_json::{json, Value};
use uuid::Uuid;

async fn act(env: &TestEnv, device: Uuid, kind: &str, params: Value) -> Value {
    env.act(device, kind, params, 60).await
}

fn message(id: &str, from: &str, subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: staff@example.org\r\nSubject: {subject}\r\nMessage-ID: {id}\r\n\
         Date: Mon, 7 Dec 2026 01:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

fn users(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("user{i:02}")).collect()
}

/// (user, mailbox, guid) of each message of a search result.
fn refs(found: &Value) -> Vec<Value> {
    found["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| json!({ "user": m["user"], "mailbox": m["mailbox"], "guid": m["guid"] }))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_phishing_cluster_is_found_soft_deleted_and_put_back_with_its_flags() {
    if let Some(why) = dovecot::skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let mut everyone = users(20);
    everyone.push("carol".into());
    let mut mail = Dovecot::start(&everyone);
    let phish_id = format!("<{}@invoices.example>", Uuid::new_v4());
    let phish = message(
        &phish_id,
        "Billing <billing@invoices.example>",
        "Overdue invoice 4471",
        "Pay at http://invoices.example/pay",
    );
    mail.deliver("billing@invoices.example", &users(20), &phish);
    let benign_id = format!("<{}@example.org>", Uuid::new_v4());
    mail.deliver("hr@example.org", &everyone, &message(&benign_id, "HR <hr@example.org>", "Holiday rota", "See you"));

    // What the users did before: user01 read and flagged it.
    let mut imap = mail.imap("user01");
    let uid = imap.find("INBOX", &phish_id)[0];
    imap.command("SELECT INBOX").expect("select");
    imap.command(&format!("UID STORE {uid} +FLAGS (\\Seen \\Flagged)")).expect("store");
    let (flags_before, date_before) = imap.flags_and_date(uid);
    assert!(flags_before.contains(&"\\Flagged".to_string()), "{flags_before:?}");

    let mut env = TestEnv::start(&Db::Sqlite).await;
    let (device, dir) = env.enroll("mail-1").await;
    let mut config = mail.agent_config();
    config.internal_domains = vec!["example.org".into()];
    let _agent = env.start_agent_with(device, &dir, move |c| c.mail = Some(config));
    eventually!(10, "online", env.device_status(device).await == "online");
    let caps = env.device(device).await["capabilities"].clone();
    assert!(caps.as_array().expect("caps").iter().any(|c| c == "soft_delete_email"), "{caps}");
    // The device says it is a mail host, and which domains are internal.
    eventually!(
        10,
        "mail host facts",
        env.device(device).await["mail_host"]["internal_domains"] == json!(["example.org"])
    );

    // The explorer: by Message-ID, and by subject text.
    let found = act(&env, device, "mail_search", json!({ "message_id": phish_id })).await;
    assert_eq!(found["status"], "succeeded", "{found}");
    let out = &found["result"]["output"];
    let mut who: Vec<String> =
        out["messages"].as_array().expect("messages").iter().map(|m| m["user"].as_str().unwrap_or("").into()).collect();
    who.sort();
    assert_eq!(who, users(20), "exactly the cluster: {out}");
    let by_subject =
        act(&env, device, "mail_search", json!({ "subject": "overdue INVOICE", "users": ["user03", "carol"] })).await;
    assert_eq!(by_subject["result"]["output"]["messages"].as_array().map(Vec::len), Some(1), "{by_subject}");

    // The explorer across mail hosts: one cluster of 20 messages in 20
    // mailboxes, with the references to act on.
    let created = env
        .admin(|c| c.post("/api/v1/mail/searches", &json!({ "criteria": { "subject": "invoice" } })))
        .await
        .expect("explorer search");
    let sid = created["id"].as_str().expect("search id").to_string();
    let path = format!("/api/v1/mail/searches/{sid}");
    let show = |query: &str| {
        let path = format!("{path}{query}");
        env.admin(move |c| c.get(&path))
    };
    eventually!(30, "every host answered", show("").await.expect("show")["complete"] == true);
    let explored = show("").await.expect("show");
    assert_eq!(explored["total_clusters"], 1, "{explored}");
    let top = &explored["clusters"][0];
    assert_eq!((top["messages"].as_u64(), top["mailboxes"].as_u64()), (Some(20), Some(20)), "{top}");
    assert_eq!(top["message_id"], phish_id.as_str());
    let cluster = top["targets"][0]["messages"].as_array().expect("targets").clone();
    assert_eq!(top["targets"][0]["device_id"], device.to_string());
    let by_sender = show("?by=sender_subject&per_page=1").await.expect("show");
    assert_eq!(by_sender["clusters"].as_array().map(Vec::len), Some(1));
    // The same through picketctl.
    let ctl = env.ctl("explorer", "responder").await;
    let ctl = tokio::task::block_in_place(|| ctl.run(&["mail", "search", "--subject", "Holiday rota"]));
    let said = String::from_utf8_lossy(&ctl.stdout);
    assert!(ctl.status.success(), "{said} {}", String::from_utf8_lossy(&ctl.stderr));
    assert!(said.contains("21 messages, 1 clusters") && said.contains("Holiday rota"), "{said}");

    // Soft delete the cluster: gone from every INBOX, not in any folder a
    // client shows by default; the benign message stays.
    let deleted = act(&env, device, "soft_delete_email", json!({ "messages": cluster })).await;
    assert_eq!(deleted["status"], "succeeded", "{deleted}");
    assert_eq!(deleted["result"]["output"]["counts"]["done"], 20, "{deleted}");
    for user in users(20) {
        let mut imap = mail.imap(&user);
        assert!(imap.find("INBOX", &phish_id).is_empty(), "{user} still sees it");
        assert_eq!(imap.find("INBOX", &benign_id).len(), 1, "{user} lost the benign message");
        assert_eq!(imap.find("Recoverable Items", &phish_id).len(), 1, "{user}: recoverable");
        assert!(!imap.subscribed().iter().any(|m| m == "Recoverable Items"), "{user}: the folder is shown");
    }
    assert_eq!(mail.imap("carol").find("INBOX", &benign_id).len(), 1);

    // The same batch again: already there, nothing moved twice; a message
    // that does not exist and a user that does not exist are reported.
    let mut again = cluster.clone();
    again.push(json!({ "user": "user01", "mailbox": "INBOX", "guid": "no-such-guid" }));
    again.push(json!({ "user": "nobody", "mailbox": "INBOX", "guid": "x" }));
    let repeat = act(&env, device, "soft_delete_email", json!({ "messages": again })).await;
    let counts = &repeat["result"]["output"]["counts"];
    assert_eq!((counts["already_there"].as_u64(), counts["not_found"].as_u64()), (Some(20), Some(2)), "{repeat}");

    // Undo: back in INBOX, with the flags and internal date it had.
    let id = deleted["id"].as_str().expect("id").to_string();
    let restored = env.undo(&id, "restore_email", 60).await;
    assert_eq!(restored["result"]["output"]["counts"]["done"], 20, "{restored}");
    for user in users(20) {
        let mut imap = mail.imap(&user);
        assert_eq!(imap.find("INBOX", &phish_id).len(), 1, "{user} did not get it back");
        assert!(imap.find("Recoverable Items", &phish_id).is_empty(), "{user}");
    }
    let mut imap = mail.imap("user01");
    let uid = imap.find("INBOX", &phish_id)[0];
    let (flags_after, date_after) = imap.flags_and_date(uid);
    let sorted = |mut f: Vec<String>| {
        f.retain(|x| x != "\\Recent");
        f.sort();
        f
    };
    assert_eq!(sorted(flags_after), sorted(flags_before));
    assert_eq!(date_after, date_before);

    // Junk and back to the inbox, for one user.
    let user05 = act(&env, device, "mail_search", json!({ "message_id": phish_id, "users": ["user05"] })).await;
    let one = refs(&user05["result"]["output"]);
    assert_eq!(one.len(), 1, "{user05}");
    let junked = act(&env, device, "move_to_junk", json!({ "messages": one })).await;
    assert_eq!(junked["result"]["output"]["counts"]["done"], 1, "{junked}");
    assert_eq!(mail.imap("user05").find("Junk", &phish_id).len(), 1);
    let mut back = one[0].clone();
    back["mailbox"] = json!("Junk");
    let inboxed = act(&env, device, "move_to_inbox", json!({ "messages": [back] })).await;
    assert_eq!(inboxed["result"]["output"]["counts"]["done"], 1, "{inboxed}");
    assert_eq!(mail.imap("user05").find("INBOX", &phish_id).len(), 1);
    // The console: the same search's clusters, and a whole cluster moved
    // to junk and back from there.
    let (web, password, sid2) = (env.web(), env.admin_password(), sid.clone());
    let key = top["key"].as_str().expect("key").to_string();
    let page = tokio::task::spawn_blocking(move || {
        let (cookie, csrf) = web.session("admin", &password);
        let results = web.get(&format!("/mail/searches/{sid2}"), &cookie);
        assert_eq!(results.status, 200, "{}", results.body);
        assert!(results.body.contains("Overdue invoice 4471") && results.body.contains("Apply to the cluster"));
        let act = |kind: &str| {
            let form = [
                ("csrf_token", csrf.as_str()),
                ("key", &key),
                ("by", "message_id"),
                ("kind", kind),
                ("comment", "console"),
            ];
            let done = web.post_form(&format!("/mail/searches/{sid2}/act"), &cookie, &form);
            assert_eq!(done.status, 303, "{}", done.body);
            web.get(&done.header("location"), &cookie).body
        };
        let junked = act("move_to_junk");
        let without_csrf =
            web.post_form(&format!("/mail/searches/{sid2}/act"), &cookie, &[("key", &key), ("kind", "move_to_junk")]);
        assert_eq!(without_csrf.status, 403);
        junked
    })
    .await
    .expect("console");
    assert!(page.contains("1 move_to_junk action(s) requested"), "{page}");
    eventually!(60, "junked", users(20).iter().all(|u| mail.imap(u).find("Junk", &phish_id).len() == 1));
    let back = act(&env, device, "move_to_inbox", json!({ "messages": cluster })).await;
    assert_eq!(back["result"]["output"]["counts"]["done"], 20, "{back}");

    // The whole cluster named by its search, resolved on the host.
    let by_search = json!({ "search": { "message_id": phish_id } });
    let cluster_deleted = act(&env, device, "soft_delete_email", by_search).await;
    assert_eq!(cluster_deleted["result"]["output"]["counts"]["done"], 20, "{cluster_deleted}");
    assert!(mail.imap("user07").find("INBOX", &phish_id).is_empty());

    // Dovecot stops while the undo is asked: the agent waits for it and
    // finishes the batch once it is back.
    mail.stop();
    let id = cluster_deleted["id"].as_str().expect("id").to_string();
    let undo = env
        .admin(move |c| c.post(&format!("/api/v1/actions/{id}/undo"), &json!({ "comment": "released" })))
        .await
        .expect("undo");
    let undo_id = undo["id"].as_str().expect("id").to_string();
    eventually!(10, "running", env.action_status(&undo_id).await == "running");
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    mail.restart();
    eventually!(60, "restored", matches!(env.action_status(&undo_id).await.as_str(), "succeeded" | "failed"));
    let restored = env.action(&undo_id).await;
    assert_eq!(restored["result"]["output"]["counts"]["done"], 20, "{restored}");
    assert_eq!(mail.imap("user07").find("INBOX", &phish_id).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mail_kinds_are_refused_for_a_device_that_is_not_a_mail_host_and_bad_names_never_reach_dovecot() {
    let mut env = TestEnv::start(&Db::Sqlite).await;
    let (device, dir) = env.enroll("not-mail").await;
    let _agent = env.start_agent(device, &dir);
    eventually!(10, "online", env.device_status(device).await == "online");
    assert_eq!(env.device(device).await["mail_host"], Value::Null);
    let body = json!({ "kind": "mail_search", "params": { "subject": "x" }, "comment": "e2e" });
    let refused = env.admin(move |c| c.post(&format!("/api/v1/devices/{device}/actions"), &body)).await;
    let err = refused.expect_err("not a mail host").to_string();
    assert!(err.contains("mail_search"), "{err}");
    // The explorer refuses a device that is not a mail host before it asks
    // any: no half-sent search.
    let body = json!({ "criteria": { "subject": "x" }, "devices": [device] });
    let refused = env.admin(move |c| c.post("/api/v1/mail/searches", &body)).await;
    let err = refused.expect_err("not a mail host").to_string();
    assert!(err.contains("not a mail host"), "{err}");
    let path = format!("/api/v1/actions?device={device}&kind=mail_search");
    let listed = env.admin(move |c| c.get(&path)).await.expect("actions");
    assert_eq!(listed["items"], json!([]), "{listed}");
    for params in [
        json!({ "messages": [{ "user": "-alice", "mailbox": "INBOX", "guid": "g" }] }),
        json!({ "messages": [{ "user": "alice", "mailbox": "IN\u{0}BOX", "guid": "g" }] }),
        json!({ "messages": [{ "user": "alice", "mailbox": "INBOX", "guid": "a b" }] }),
        json!({ "messages": [] }),
    ] {
        let body = json!({ "kind": "soft_delete_email", "params": params, "comment": "e2e" });
        let refused = env.admin(move |c| c.post(&format!("/api/v1/devices/{device}/actions"), &body)).await;
        let err = refused.expect_err("bad names").to_string();
        assert!(
            err.contains("user") || err.contains("mailbox") || err.contains("guid") || err.contains("messages"),
            "{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_dovecot_gone_each_message_fails_with_the_reason_and_nothing_is_lost() {
    if let Some(why) = dovecot::skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let mut mail = Dovecot::start(&users(3));
    let id = format!("<{}@x.example>", Uuid::new_v4());
    mail.deliver("x@x.example", &users(3), &message(&id, "x@x.example", "Hello", "body"));
    let mut env = TestEnv::start(&Db::Sqlite).await;
    let (device, dir) = env.enroll("mail-2").await;
    let mut config = mail.agent_config();
    config.unreachable_wait_secs = 1;
    let _agent = env.start_agent_with(device, &dir, move |c| c.mail = Some(config));
    eventually!(10, "online", env.device_status(device).await == "online");
    let found = act(&env, device, "mail_search", json!({ "message_id": id })).await;
    let cluster = refs(&found["result"]["output"]);
    assert_eq!(cluster.len(), 3, "{found}");

    // Search text that looks like doveadm's query language is only text:
    // nothing matches, nothing widens the search.
    for subject in [") OR ALL (", "Hello\" OR ALL", "ALL"] {
        let probe = act(&env, device, "mail_search", json!({ "subject": subject })).await;
        assert_eq!(probe["result"]["output"]["messages"], json!([]), "{subject}: {probe}");
    }

    mail.stop();
    let a = act(&env, device, "soft_delete_email", json!({ "messages": cluster })).await;
    let out = &a["result"]["output"];
    assert_eq!(out["counts"]["failed"], 3, "{a}");
    let why = out["items"][0]["error"].as_str().unwrap_or_default();
    assert!(why.contains("unreachable"), "{why}");
    // A search cannot run at all: the action fails and says why.
    let search = act(&env, device, "mail_search", json!({ "subject": "Hello" })).await;
    assert_eq!(search["status"], "failed", "{search}");
    assert!(search["result"]["error"].as_str().unwrap_or_default().contains("unreachable"), "{search}");

    mail.restart();
    for user in users(3) {
        assert_eq!(mail.imap(&user).find("INBOX", &id).len(), 1, "{user} lost the message");
    }
    let again = act(&env, device, "soft_delete_email", json!({ "messages": cluster })).await;
    assert_eq!(again["result"]["output"]["counts"]["done"], 3, "{again}");
}

/// A rogue agent with a real device certificate declares mail host facts:
/// nothing is stored unless its Hello offered the mail kinds and every
/// domain is a plain domain name; the session goes on either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mail_host_facts_from_a_device_are_checked_before_they_are_kept() {
    use picket_common::io::{read_frame, write_frame};
    use picket_common::limits::DEFAULT_MAX_FRAME;
    use picket_common::proto::{AgentMsg, CoordMsg, MailHostFacts};
    let env = TestEnv::start(&Db::Sqlite).await;
    let (device, dir) = env.enroll("rogue-mail").await;
    let facts = |domains: &[&str]| {
        AgentMsg::MailHost(MailHostFacts { internal_domains: domains.iter().map(|d| d.to_string()).collect() })
    };
    let heartbeat_answered = |mut tls: picket_e2e::raw::Tls, seq: u64| async move {
        write_frame(&mut tls, &AgentMsg::Heartbeat { seq }, DEFAULT_MAX_FRAME).await.expect("heartbeat");
        loop {
            match read_frame::<_, CoordMsg>(&mut tls, DEFAULT_MAX_FRAME).await.expect("read").expect("still open") {
                CoordMsg::HeartbeatAck { seq: s } if s == seq => return tls,
                _ => continue,
            }
        }
    };
    // A Hello without the mail kinds: its facts are ignored.
    let mut tls = picket_e2e::raw::session(env.agent_addr(), &dir).await;
    write_frame(&mut tls, &facts(&["example.org"]), DEFAULT_MAX_FRAME).await.expect("facts");
    let tls = heartbeat_answered(tls, 1).await;
    assert_eq!(env.device(device).await["mail_host"], Value::Null);
    drop(tls);
    // A Hello that offers them: malformed domains are not kept, good ones are.
    let mut hello = picket_e2e::raw::hello();
    if let AgentMsg::Hello(h) = &mut hello {
        h.capabilities = vec!["mail_search".into()];
    }
    let mut tls = picket_e2e::raw::session_with(env.agent_addr(), &dir, &hello).await;
    for bad in [vec!["EXAMPLE.org"], vec!["a,b.org"], vec!["<script>.org"], vec![""]] {
        write_frame(&mut tls, &facts(&bad), DEFAULT_MAX_FRAME).await.expect("facts");
    }
    let too_many: Vec<String> = (0..300).map(|i| format!("d{i}.example")).collect();
    let many: Vec<&str> = too_many.iter().map(String::as_str).collect();
    write_frame(&mut tls, &facts(&many), DEFAULT_MAX_FRAME).await.expect("facts");
    let mut tls = heartbeat_answered(tls, 2).await;
    assert_eq!(env.device(device).await["mail_host"], Value::Null);
    write_frame(&mut tls, &facts(&["example.org", "corp.example"]), DEFAULT_MAX_FRAME).await.expect("facts");
    let _tls = heartbeat_answered(tls, 3).await;
    let shown = env.device(device).await;
    assert_eq!(shown["mail_host"]["internal_domains"], json!(["example.org", "corp.example"]), "{shown}");
}

/// Every (mailbox, uid) where `user` sees the message `message_id`.
fn anywhere(mail: &Dovecot, user: &str, message_id: &str) -> Vec<(String, u32)> {
    let mut imap = mail.imap(user);
    let folders: Vec<String> = imap
        .command("LIST \"\" \"*\"")
        .expect("LIST")
        .iter()
        .filter_map(|l| match l.strip_suffix('"') {
            // `* LIST (…) "." "Recoverable Items"`: the last quoted string.
            Some(rest) => rest.rfind('"').map(|i| rest[i + 1..].to_string()),
            None => l.rsplit(' ').next().map(str::to_string),
        })
        .collect();
    folders.into_iter().flat_map(|f| imap.find(&f, message_id).into_iter().map(move |u| (f.clone(), u))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quarantine_takes_mail_where_no_user_reaches_release_is_byte_identical_and_hard_delete_takes_two_people() {
    if let Some(why) = dovecot::skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let people: Vec<String> = ["alice", "bob", "carol"].iter().map(|u| u.to_string()).collect();
    let mail = Dovecot::start(&people);
    let id = format!("<{}@payroll.example>", Uuid::new_v4());
    let body = "Your salary slip is attached: http://payroll.example/slip\r\n".repeat(5);
    // One LMTP delivery to two people: Dovecot gives both copies one GUID.
    mail.deliver("hr@payroll.example", &people[..2], &message(&id, "HR <hr@payroll.example>", "Salary slip", &body));
    let mut imap = mail.imap("alice");
    let uid = imap.find("INBOX", &id)[0];
    imap.command("SELECT INBOX").expect("select");
    imap.command(&format!("UID STORE {uid} +FLAGS (\\Flagged $Important)")).expect("store");
    let (flags_before, date_before) = imap.flags_and_date(uid);
    let raw_before = imap.raw(uid);
    drop(imap);

    // The configured two-person rule is off: a hard delete keeps it anyway.
    let mut env = TestEnv::start_with(&Db::Sqlite, |c| c.actions.two_person_rule = false).await;
    let (device, dir) = env.enroll("mail-q").await;
    let config = mail.agent_config();
    let _agent = env.start_agent_with(device, &dir, move |c| c.mail = Some(config));
    eventually!(10, "online", env.device_status(device).await == "online");

    // Quarantine the cluster: gone from every folder both users can see,
    // kept in the quarantine account, one folder per user.
    let quarantined = act(&env, device, "quarantine_email", json!({ "search": { "message_id": id } })).await;
    assert_eq!(quarantined["result"]["output"]["counts"]["done"], 2, "{quarantined}");
    for user in ["alice", "bob"] {
        assert_eq!(anywhere(&mail, user, &id), vec![], "{user} still reaches it");
    }
    let held = mail.doveadm_fetch(dovecot::QUARANTINE, "mailbox", &["header", "message-id", &id]);
    assert!(held.contains("mailbox=alice") && held.contains("mailbox=bob"), "{held}");
    // No one logs in to the quarantine account, with any password.
    for password in ["!", "", dovecot::PASSWORD] {
        let refused = mail.imap_login(dovecot::QUARANTINE, password);
        assert!(refused.is_err(), "logged in to the quarantine account with {password:?}");
    }
    // The explorer does not offer quarantined mail as the users' mail, and
    // no batch moves it out of the quarantine account but a release.
    let found = act(&env, device, "mail_search", json!({ "message_id": id })).await;
    assert_eq!(found["result"]["output"]["messages"], json!([]), "{found}");
    let guid = quarantined["result"]["output"]["items"][0]["guid"].clone();
    let theft = json!({ "messages": [{ "user": dovecot::QUARANTINE, "mailbox": "alice", "guid": guid }] });
    let moved = act(&env, device, "move_to_inbox", theft).await;
    let item = &moved["result"]["output"]["items"][0];
    assert_eq!(item["outcome"], "failed", "{moved}");
    assert!(item["error"].as_str().unwrap_or_default().contains("release_email"), "{moved}");

    // Release (the undo): back in alice's INBOX byte for byte, with her
    // flags and its internal date.
    let qid = quarantined["id"].as_str().expect("id").to_string();
    let released = env.undo(&qid, "release_email", 60).await;
    assert_eq!(released["result"]["output"]["counts"]["done"], 2, "{released}");
    let mut imap = mail.imap("alice");
    let uid = imap.find("INBOX", &id)[0];
    assert_eq!(imap.raw(uid), raw_before, "the released message differs from the original");
    let (flags_after, date_after) = imap.flags_and_date(uid);
    let sorted = |mut f: Vec<String>| {
        f.retain(|x| x != "\\Recent");
        f.sort();
        f
    };
    assert_eq!((sorted(flags_after), date_after), (sorted(flags_before), date_before));
    assert_eq!(anywhere(&mail, "bob", &id).len(), 1, "bob got his copy back");
    let empty = mail.doveadm_fetch(dovecot::QUARANTINE, "mailbox", &["header", "message-id", &id]);
    assert!(empty.trim().is_empty(), "{empty}");
    // A quarantine's record is released, not restored.
    let record = quarantined["result"]["output"]["record_id"].clone();
    let wrong = act(&env, device, "restore_email", json!({ "record_id": record })).await;
    assert_eq!(wrong["status"], "failed", "{wrong}");
    assert!(wrong["result"]["error"].as_str().unwrap_or_default().contains("release_email"), "{wrong}");

    // Hard delete: a responder may not ask for it; an approver asks, waits
    // for a second approver (the same person cannot), and it is gone for
    // good with what it was kept in the action's result.
    let bobs = json!({ "messages": [{ "user": "bob", "mailbox": "INBOX", "guid": guid }] });
    let body = json!({ "kind": "hard_delete_email", "params": bobs, "comment": "malware" });
    let responder = env.token("resp", "responder").await;
    let asked = body.clone();
    let refused = env.api(&responder, move |c| c.post(&format!("/api/v1/devices/{device}/actions"), &asked)).await;
    assert!(refused.expect_err("a responder").to_string().contains("approver"));
    let asker = env.token("asker", "approver").await;
    let asked = body.clone();
    let pending = env
        .api(&asker, move |c| c.post(&format!("/api/v1/devices/{device}/actions"), &asked))
        .await
        .expect("an approver asks");
    assert_eq!(pending["status"], "pending_approval", "{pending}");
    let hid = pending["id"].as_str().expect("id").to_string();
    let path = format!("/api/v1/actions/{hid}/approve");
    let p = path.clone();
    let own = env.api(&asker, move |c| c.post(&p, &json!({ "comment": "me" }))).await;
    assert!(own.expect_err("two-person").to_string().contains("two-person"));
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(anywhere(&mail, "bob", &id).len(), 1, "deleted before a second person approved");
    let second = env.token("second", "approver").await;
    env.api(&second, move |c| c.post(&path, &json!({ "comment": "confirmed malware" }))).await.expect("approve");
    eventually!(60, "hard deleted", matches!(env.action_status(&hid).await.as_str(), "succeeded" | "failed"));
    let gone = env.action(&hid).await;
    let item = &gone["result"]["output"]["items"][0];
    assert_eq!(item["outcome"], "done", "{gone}");
    assert_eq!(
        (item["message"]["message_id"].as_str(), item["message"]["subject"].as_str()),
        (Some(id.as_str()), Some("Salary slip"))
    );
    assert_eq!(anywhere(&mail, "bob", &id), vec![], "bob still has it");
    let left = mail.doveadm_fetch("bob", "guid", &["all"]);
    assert!(left.trim().is_empty(), "{left}");
    assert_eq!(anywhere(&mail, "alice", &id).len(), 1, "alice's copy is not part of it");
    let undo = env.admin(move |c| c.post(&format!("/api/v1/actions/{hid}/undo"), &json!({ "comment": "oops" }))).await;
    assert!(undo.is_err(), "a hard delete was undone: {undo:?}");
}

fn with_attachments(id: &str, parts: &[(&str, &str, &str)]) -> Vec<u8> {
    let mut m = format!(
        "From: Billing <billing@invoices.example>\r\nTo: staff@example.org\r\nSubject: Invoice attached\r\n\
         Message-ID: {id}\r\nDate: Mon, 7 Dec 2026 02:00:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"=_b\"\r\n\r\n--=_b\r\nContent-Type: text/plain\r\n\r\n\
         Please find the invoice attached. Pay at https://pay.invoices.example/now?id=7&x=1.\r\n"
    );
    for (name, encoding, body) in parts {
        m.push_str(&format!(
            "--=_b\r\nContent-Type: application/octet-stream; name=\"{name}\"\r\n\
             Content-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: {encoding}\r\n\r\n{body}\r\n"
        ));
    }
    m.push_str("--=_b--\r\n");
    m.into_bytes()
}

fn base64_lines(data: &[u8]) -> String {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(data);
    text.as_bytes().chunks(76).map(|l| String::from_utf8_lossy(l).into_owned()).collect::<Vec<_>>().join("\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_attachment_is_cut_out_of_the_users_copy_and_the_release_brings_back_the_original_byte_for_byte() {
    if let Some(why) = dovecot::skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let people: Vec<String> = ["alice", "bob", "carol"].iter().map(|u| u.to_string()).collect();
    let mail = Dovecot::start(&people);
    let payload = b"MZ\x90\x00 not really a program, but the bytes of one".repeat(50);
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&payload))
    };
    let id = format!("<{}@invoices.example>", Uuid::new_v4());
    let exe = base64_lines(&payload);
    let message = with_attachments(&id, &[("invoice.exe", "base64", &exe), ("terms.txt", "7bit", "Pay in 30 days.")]);
    mail.deliver("billing@invoices.example", &people[..2], &message);
    // Malformed MIME: an attachment whose base64 is broken.
    let broken_id = format!("<{}@invoices.example>", Uuid::new_v4());
    let broken = with_attachments(&broken_id, &[("x.exe", "base64", "!!!! not base64 at all ####")]);
    mail.deliver("billing@invoices.example", &people[..1], &broken);
    // A 50 MB message (its attachment 37 MB before encoding).
    let big_id = format!("<{}@invoices.example>", Uuid::new_v4());
    let big_payload: Vec<u8> = (0..37 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let big = with_attachments(&big_id, &[("dump.bin", "base64", &base64_lines(&big_payload))]);
    assert!(big.len() > 50_000_000, "{}", big.len());
    mail.deliver("billing@invoices.example", &people[2..], &big);
    let eicar_id = format!("<{}@tests.example>", Uuid::new_v4());
    let eicar = format!(
        "From: av@tests.example\r\nTo: staff@example.org\r\nSubject: Test file\r\nMessage-ID: {eicar_id}\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"e\"\r\n\r\n--e\r\n\
         Content-Type: text/plain\r\n\r\nThe antivirus test file.\r\n--e\r\n\
         Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"eicar.com\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--e--\r\n",
        base64_lines(&picket_e2e::eicar())
    );
    mail.deliver("av@tests.example", &people[..2], eicar.as_bytes());

    let mut imap = mail.imap("alice");
    let uid = imap.find("INBOX", &id)[0];
    imap.command("SELECT INBOX").expect("select");
    imap.command(&format!("UID STORE {uid} +FLAGS (\\Seen $Invoice)")).expect("store");
    let (flags_before, _) = imap.flags_and_date(uid);
    let raw_before = imap.raw(uid);
    let broken_uid = imap.find("INBOX", &broken_id)[0];
    let broken_before = imap.raw(broken_uid);
    drop(imap);

    let mut env = TestEnv::start(&Db::Sqlite).await;
    let (device, dir) = env.enroll("mail-att").await;
    let config = mail.agent_config();
    let _agent = env.start_agent_with(device, &dir, move |c| c.mail = Some(config));
    eventually!(10, "online", env.device_status(device).await == "online");
    let found = act(&env, device, "mail_search", json!({ "message_id": id })).await;
    let cluster = refs(&found["result"]["output"]);
    assert_eq!(cluster.len(), 2, "{found}");

    // A mail scan: the attachments through the agent's own rules. The
    // invoice's program is not malware; the EICAR test file is.
    let clean = act(&env, device, "mail_scan", json!({ "messages": cluster })).await;
    let out = &clean["result"]["output"];
    assert_eq!((out["scanned"].as_u64(), out["attachments"].as_u64()), (Some(2), Some(4)), "{clean}");
    assert_eq!(out["messages"], json!([]), "{clean}");
    let flagged = act(&env, device, "mail_scan", json!({ "search": { "attachment_name": "eicar.com" } })).await;
    let out = &flagged["result"]["output"];
    assert_eq!(out["messages"].as_array().map(Vec::len), Some(2), "{flagged}");
    let hit = &out["messages"][0]["detections"][0];
    assert_eq!(
        (hit["attachment"].as_str(), hit["severity"].as_str()),
        (Some("eicar.com"), Some("malicious")),
        "{flagged}"
    );
    assert_eq!(out["messages"][0]["subject"], "Test file");

    // The explorer by what is inside: attachment hash and name, link and
    // domain. Each finds exactly what holds it.
    let users_of = |found: &Value| {
        let mut users: Vec<String> = found["result"]["output"]["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| format!("{}:{}", m["user"].as_str().unwrap_or(""), m["subject"].as_str().unwrap_or("")))
            .collect();
        users.sort();
        users
    };
    let two = vec!["alice:Invoice attached".to_string(), "bob:Invoice attached".to_string()];
    let by_sha = act(&env, device, "mail_search", json!({ "attachment_sha256": sha })).await;
    assert_eq!(users_of(&by_sha), two, "{by_sha}");
    assert_eq!(by_sha["result"]["output"]["messages"][0]["attachments"][0]["sha256"], sha.as_str());
    let by_name = act(&env, device, "mail_search", json!({ "attachment_name": "INVOICE.EXE" })).await;
    assert_eq!(users_of(&by_name), two, "{by_name}");
    let by_link = act(&env, device, "mail_search", json!({ "url": "https://pay.invoices.example/now?id=7&x=1" })).await;
    assert_eq!(users_of(&by_link).len(), 4, "every message with the link: {by_link}");
    let by_domain = act(&env, device, "mail_search", json!({ "url": "invoices.example", "users": ["carol"] })).await;
    assert_eq!(users_of(&by_domain).len(), 1, "{by_domain}");
    for nothing in [json!({ "url": "https://pay.invoices.example/now" }), json!({ "url": "other.example" })] {
        let none = act(&env, device, "mail_search", nothing.clone()).await;
        assert_eq!(users_of(&none), Vec::<String>::new(), "{nothing}: {none}");
    }
    let created = env
        .admin(|c| c.post("/api/v1/mail/searches", &json!({ "criteria": { "attachment_name": "invoice.exe" } })))
        .await
        .expect("explorer");
    let path = format!("/api/v1/mail/searches/{}?by=attachment", created["id"].as_str().expect("id"));
    let p = path.clone();
    eventually!(30, "answered", {
        let p = p.clone();
        env.admin(move |c| c.get(&p)).await.expect("show")["complete"] == true
    });
    let clusters = env.admin(move |c| c.get(&path)).await.expect("show");
    // One cluster per attachment of the messages found (the program and
    // the terms), each with both copies.
    assert_eq!(clusters["total_clusters"], 2, "{clusters}");
    let program = clusters["clusters"].as_array().into_iter().flatten().find(|c| c["key"] == sha.as_str());
    let program = program.unwrap_or_else(|| panic!("no cluster of {sha}: {clusters}"));
    assert_eq!((program["attachment"]["name"].as_str(), program["messages"].as_u64()), (Some("invoice.exe"), Some(2)));

    // By SHA-256: each user's copy loses the program and keeps the rest.
    let params = json!({ "messages": cluster, "sha256": [sha], "reason": "malware in invoice.exe" });
    let cut = act(&env, device, "quarantine_attachment", params).await;
    assert_eq!(cut["result"]["output"]["counts"]["done"], 2, "{cut}");
    let item = &cut["result"]["output"]["items"][0];
    assert_eq!(item["attachments"][0]["name"], "invoice.exe", "{cut}");
    assert_eq!(item["attachments"][0]["sha256"], sha.as_str());
    let mut imap = mail.imap("alice");
    let copies = imap.find("INBOX", &id);
    assert_eq!(copies.len(), 1, "alice sees one copy");
    let copy = imap.raw(copies[0]);
    assert!(!copy.contains(&exe[..60]), "the program is still in alice's copy");
    assert!(copy.contains("invoice.exe") && copy.contains("quarantined") && copy.contains("malware in invoice.exe"));
    assert!(copy.contains("Pay in 30 days.") && copy.contains("Please find the invoice attached."), "{copy}");
    assert!(copy.contains("Subject: Invoice attached") && copy.contains(&format!("Message-ID: {id}")));
    let (flags_copy, _) = imap.flags_and_date(copies[0]);
    let sorted = |mut f: Vec<String>| {
        f.retain(|x| x != "\\Recent");
        f.sort();
        f
    };
    assert_eq!(sorted(flags_copy), sorted(flags_before.clone()));
    // The original is in quarantine, out of alice's reach.
    let held = mail.doveadm_fetch(dovecot::QUARANTINE, "mailbox", &["header", "message-id", &id]);
    assert!(held.contains("mailbox=alice") && held.contains("mailbox=bob"), "{held}");

    // Malformed MIME: reported, the message left as it was.
    let bad = json!({ "messages": [{ "user": "alice", "mailbox": "INBOX", "guid": refs(
        &act(&env, device, "mail_search", json!({ "message_id": broken_id })).await["result"]["output"])[0]["guid"] }] });
    let refused = act(&env, device, "quarantine_attachment", bad).await;
    let item = &refused["result"]["output"]["items"][0];
    assert_eq!(item["outcome"], "failed", "{refused}");
    assert!(item["error"].as_str().unwrap_or_default().contains("malformed MIME"), "{refused}");
    let mut imap = mail.imap("alice");
    let now = imap.find("INBOX", &broken_id);
    assert_eq!(now.len(), 1);
    assert_eq!(imap.raw(now[0]), broken_before, "the malformed message was changed");

    // The 50 MB message: its attachment goes, the rest stays.
    let big_found = act(&env, device, "mail_search", json!({ "message_id": big_id })).await;
    let big_cut =
        act(&env, device, "quarantine_attachment", json!({ "messages": refs(&big_found["result"]["output"]) })).await;
    assert_eq!(big_cut["result"]["output"]["counts"]["done"], 1, "{big_cut}");
    assert_eq!(big_cut["result"]["output"]["items"][0]["attachments"][0]["size"], big_payload.len());
    let small = mail.doveadm_fetch("carol", "size.physical", &["header", "message-id", &big_id]);
    let size: u64 = small.trim().trim_start_matches("size.physical=").parse().expect("size");
    assert!(size < 10_000, "carol's copy is still {size} bytes");

    // Release: the original back byte for byte, the rebuilt copy gone.
    let cid = cut["id"].as_str().expect("id").to_string();
    assert_eq!(env.undo(&cid, "release_email", 60).await["result"]["output"]["counts"]["done"], 2);
    let mut imap = mail.imap("alice");
    let back = imap.find("INBOX", &id);
    assert_eq!(back.len(), 1, "the rebuilt copy is still there");
    assert_eq!(imap.raw(back[0]), raw_before, "the released message differs from the original");
    assert_eq!(sorted(imap.flags_and_date(back[0]).0), sorted(flags_before));
    drop(imap);

    // The console: the search grouped by attachment quarantines the
    // program's cluster with the comment as the users' note.
    let (web, password) = (env.web(), env.admin_password());
    let sid = created["id"].as_str().expect("id").to_string();
    let done = tokio::task::spawn_blocking(move || {
        let (cookie, csrf) = web.session("admin", &password);
        let shown = web.get(&format!("/mail/searches/{sid}?by=attachment"), &cookie);
        assert!(shown.body.contains("invoice.exe") && shown.body.contains("quarantine_attachment"), "{}", shown.body);
        let form = [
            ("csrf_token", csrf.as_str()),
            ("key", sha.as_str()),
            ("by", "attachment"),
            ("kind", "quarantine_attachment"),
            ("comment", "console: malware"),
        ];
        let posted = web.post_form(&format!("/mail/searches/{sid}/act"), &cookie, &form);
        assert_eq!(posted.status, 303, "{}", posted.body);
        web.get(&posted.header("location"), &cookie).body
    })
    .await
    .expect("console");
    assert!(done.contains("1 quarantine_attachment action(s) requested"), "{done}");
    eventually!(60, "cut from the console", {
        let mut imap = mail.imap("bob");
        let now = imap.find("INBOX", &id);
        now.len() == 1 && imap.raw(now[0]).contains("console: malware")
    });
}

/// The investigation of `path`'s alert, once it has evidence.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_malicious_attachment_opens_an_email_investigation_linked_to_the_file_one_and_its_cluster_waits_for_a_person()
{
    if let Some(why) = dovecot::skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let people: Vec<String> = ["alice", "bob", "carol"].iter().map(|u| u.to_string()).collect();
    let mail = Dovecot::start(&people);
    let id = format!("<{}@outside.example>", Uuid::new_v4());
    let eicar = picket_e2e::eicar();
    let message = format!(
        "From: Mallory <m@outside.example>\r\nTo: staff@example.org\r\nSubject: Your parcel\r\nMessage-ID: {id}\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"p\"\r\n\r\n--p\r\nContent-Type: text/plain\r\n\r\n\
         Track it at https://parcel.outside.example/t/1\r\n--p\r\nContent-Type: application/octet-stream\r\n\
         Content-Disposition: attachment; filename=\"label.com\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--p--\r\n",
        base64_lines(&eicar)
    );
    mail.deliver("m@outside.example", &people[..2], message.as_bytes());
    mail.deliver("hr@example.org", &people, &self::message("<benign@example.org>", "hr@example.org", "Rota", "hi"));

    let search = tempfile::tempdir().expect("tempdir");
    let copies = search.path().display().to_string();
    let mut env = TestEnv::start_with(&Db::Sqlite, move |c| {
        c.investigations.automatic = true;
        c.investigations.copy_search_paths = vec![copies];
    })
    .await;
    // The same file on an ordinary device, found by a scan first.
    let (laptop, laptop_dir) = env.enroll("laptop").await;
    let _laptop = env.start_agent(laptop, &laptop_dir);
    let (host, dir) = env.enroll("mail-inv").await;
    let mut config = mail.agent_config();
    config.internal_domains = vec!["example.org".into()];
    let _agent = env.start_agent_with(host, &dir, move |c| c.mail = Some(config));
    eventually!(10, "online", env.device_status(host).await == "online" && env.device_status(laptop).await == "online");
    let downloads = tempfile::tempdir().expect("tempdir");
    std::fs::write(downloads.path().join("label.com"), &eicar).expect("write");
    let scanned = act(&env, laptop, "scan", json!({ "paths": [downloads.path()] })).await;
    assert_eq!(scanned["status"], "succeeded", "{scanned}");
    let file_inv = env.investigation_with_evidence(&downloads.path().display().to_string()).await;

    // The mail scan raises the alert; the investigation gathers the
    // cluster on the host and gives each entity a verdict.
    let scan = act(&env, host, "mail_scan", json!({ "search": { "message_id": id } })).await;
    assert_eq!(scan["result"]["output"]["messages"].as_array().map(Vec::len), Some(2), "{scan}");
    let inv = env.investigation_with_evidence("mail:").await;
    assert_eq!(inv["subject"]["kind"], "email", "{inv}");
    assert_eq!(inv["device_id"], host.to_string());
    let evidence = &inv["evidence"];
    assert_eq!(evidence["verdict"], "malicious", "{inv}");
    assert_eq!(evidence["cluster"]["messages"], 2, "{inv}");
    let of = |t: &str| -> Vec<Value> {
        evidence["items"].as_array().into_iter().flatten().filter(|i| i["type"] == t).cloned().collect()
    };
    assert_eq!(of("attachment")[0]["names"], json!(["label.com"]), "{inv}");
    assert_eq!(of("message").len(), 2);
    assert_eq!((of("sender")[0]["external"].as_bool(), of("sender").len()), (Some(true), 1), "{inv}");
    assert_eq!(of("url")[0]["url"], "https://parcel.outside.example/t/1");
    assert_eq!(of("url")[0]["verdict"], "malicious", "the threat's outside link: {inv}");
    // Linked to the file's investigation on the laptop, both ways.
    assert_eq!(evidence["related"][0]["id"], file_inv["id"], "{inv}");
    let file_id = file_inv["id"].as_str().expect("id").to_string();
    let file_now = env.admin(move |c| c.get(&format!("/api/v1/investigations/{file_id}"))).await.expect("show");
    assert!(file_now.to_string().contains(inv["id"].as_str().expect("id")), "{file_now}");

    // The cluster's quarantine waits for a person (email: always), then
    // takes both copies out of the users' reach; the benign mail stays.
    let inv_id = inv["id"].as_str().expect("id").to_string();
    let path = format!("/api/v1/actions?device={host}&kind=quarantine_email");
    let pending = env.admin(move |c| c.get(&path)).await.expect("actions");
    let proposal = pending["items"][0].clone();
    assert_eq!(proposal["status"], "pending_approval", "{pending}");
    assert_eq!(proposal["investigation_id"], inv_id.as_str());
    let approver = env.token("approver", "approver").await;
    let aid = proposal["id"].as_str().expect("id").to_string();
    env.api(&approver, move |c| c.post(&format!("/api/v1/actions/{aid}/approve"), &json!({ "comment": "phish" })))
        .await
        .expect("approve");
    if let Some(dir) = std::env::var_os("PICKET_SCREENSHOTS") {
        let (base, password, inv_id) = (env.api_url(), env.admin_password(), inv_id.clone());
        tokio::task::block_in_place(|| {
            let browser = picket_e2e::browser::Browser::start();
            browser.sign_in(&base, "admin", &password);
            browser.resize(1280, 1500);
            browser.goto(&format!("{base}/investigations/{inv_id}"));
            browser.wait_for("table.list", 10);
            browser.screenshot(&std::path::PathBuf::from(dir).join("email-investigation.png"));
        });
    }
    // The threat's link: a block proposed, waiting for a person too.
    let path = format!("/api/v1/actions?device={host}&kind=block_url");
    let blocks = env.admin(move |c| c.get(&path)).await.expect("actions");
    let block = blocks["items"][0].clone();
    assert_eq!(
        (block["status"].as_str(), block["investigation_id"].as_str()),
        (Some("pending_approval"), Some(inv_id.as_str())),
        "{blocks}"
    );
    assert_eq!(block["params"]["value"], "https://parcel.outside.example/t/1", "{block}");
    let bid = block["id"].as_str().expect("id").to_string();
    env.api(&approver, move |c| c.post(&format!("/api/v1/actions/{bid}/approve"), &json!({ "comment": "phish link" })))
        .await
        .expect("approve block");
    eventually!(60, "remediated", {
        let inv_id = inv_id.clone();
        env.admin(move |c| c.get(&format!("/api/v1/investigations/{inv_id}"))).await.expect("show")["status"]
            == "remediated"
    });
    let blocked = env.admin(|c| c.get("/api/v1/mail/blocked-urls")).await.expect("blocked urls");
    assert_eq!(blocked["items"][0]["value"], "https://parcel.outside.example/t/1", "{blocked}");
    assert_eq!(blocked["items"][0]["device_id"], host.to_string());
    for user in ["alice", "bob"] {
        assert_eq!(anywhere(&mail, user, &id), vec![], "{user} still has the parcel");
        assert_eq!(mail.imap(user).find("INBOX", "<benign@example.org>").len(), 1);
    }
}

/// Helper entry point: a mail host's agent on `PICKET_HELPER_AGENT_STATE`
/// (Dovecot's API at `PICKET_HELPER_MAIL_URL`, key in
/// `PICKET_HELPER_MAIL_KEY`) until killed.
#[test]
#[ignore = "a helper process entry point, started by the mail restart test"]
fn helper_mail_agent_process() {
    let var = |v: &str| std::env::var(v).unwrap_or_else(|_| panic!("{v}"));
    let dir = var("PICKET_HELPER_AGENT_STATE");
    picket_e2e::init_logs();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut config = picket_e2e::agent_config(std::path::Path::new(&dir));
    config.mail =
        Some(MailConfig::new(&var("PICKET_HELPER_MAIL_URL"), std::path::Path::new(&var("PICKET_HELPER_MAIL_KEY"))));
    runtime.block_on(picket_agent::session::run(config, tokio_util::sync::CancellationToken::new())).expect("agent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_cut_off_by_a_killed_agent_resumes_when_it_restarts_and_nothing_moves_twice() {
    if let Some(why) = dovecot::skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let mut mail = Dovecot::start(&users(20));
    let id = format!("<{}@invoices.example>", Uuid::new_v4());
    mail.deliver("b@invoices.example", &users(20), &message(&id, "b@invoices.example", "Overdue", "pay"));
    let env = TestEnv::start(&Db::Sqlite).await;
    let (device, dir) = env.enroll("mail-crash").await;
    let (url, key) = (mail.api_url(), mail.api_key_file());
    let spawn = || {
        std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args(["helper_mail_agent_process", "--exact", "--ignored", "--nocapture"])
            .env("PICKET_HELPER_AGENT_STATE", &dir)
            .env("PICKET_HELPER_MAIL_URL", &url)
            .env("PICKET_HELPER_MAIL_KEY", &key)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn helper")
    };
    let mut agent = spawn();
    eventually!(20, "helper agent online", env.device_status(device).await == "online");
    let found = act(&env, device, "mail_search", json!({ "message_id": id })).await;
    let cluster = refs(&found["result"]["output"]);
    assert_eq!(cluster.len(), 20, "{found}");

    // Dovecot is down: the batch starts and waits for it; the agent is
    // killed while it waits.
    mail.stop();
    let body = json!({ "kind": "soft_delete_email", "params": { "messages": cluster }, "comment": "e2e" });
    let a = env.admin(move |c| c.post(&format!("/api/v1/devices/{device}/actions"), &body)).await.expect("create");
    let aid = a["id"].as_str().expect("id").to_string();
    eventually!(20, "running", env.action_status(&aid).await == "running");
    agent.kill().expect("SIGKILL");
    agent.wait().expect("reap");
    mail.restart();
    let mut agent = spawn();
    eventually!(
        60,
        "finished after the restart",
        matches!(env.action_status(&aid).await.as_str(), "succeeded" | "failed")
    );
    let done = env.action(&aid).await;
    assert_eq!(done["result"]["output"]["counts"]["done"], 20, "{done}");
    for user in users(20) {
        assert_eq!(anywhere(&mail, &user, &id), vec![("Recoverable Items".to_string(), 1)], "{user}");
    }
    agent.kill().expect("SIGKILL");
    agent.wait().expect("reap");
}

/// A request Dovecot takes and then drops (its doveadm process dies on the
/// query: prefix `OR` mixed with the implied AND) fails after a couple of
/// tries with what happened, instead of being sent again for the whole
/// patience as if Dovecot were down; Dovecot answers the next one.
#[test]
fn a_request_that_kills_doveadm_fails_soon_and_dovecot_serves_on() {
    use picket_agent::mail::doveadm::{Doveadm, DoveadmError};
    if let Some(why) = dovecot::skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let mail = Dovecot::start(&["alice".to_string()]);
    let patience = std::time::Duration::from_secs(120);
    let doveadm = Doveadm::new(&mail.api_url(), &mail.api_key, patience).expect("client");
    let started = std::time::Instant::now();
    let killer = json!({ "user": "alice", "query": ["mailbox", "INBOX", "OR", "body", "a", "body", "b"] });
    let refused = doveadm.one("search", killer).expect_err("doveadm dies on it");
    assert!(matches!(refused, DoveadmError::Failed { .. }), "{refused:?}");
    assert!(started.elapsed() < patience / 4, "not retried for the patience: {:?}", started.elapsed());
    let good = json!({ "user": "alice", "query": ["mailbox", "INBOX", "(", "body", "a", "OR", "body", "b", ")"] });
    assert_eq!(doveadm.one("search", good).expect("Dovecot serves on"), json!([]));
}
