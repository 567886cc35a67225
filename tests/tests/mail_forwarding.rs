//! External mail forwarding on a real Dovecot (tests/src/dovecot.rs): a
//! user's Sieve script, put over ManageSieve, forwards delivered mail
//! through Dovecot's submission to the next hop (a listener standing for
//! the next mail server). The mail adapter finds the redirect, turns the
//! external one off (delivery keeps forwarding internally and stops
//! forwarding outside), and its undo puts the script back byte for byte.
//!
//! The first tests drive the agent's adapter directly; the last goes
//! through the coordinator's action pipeline and `picketctl`.

use std::time::Duration;

use picket_agent::mail::doveadm::Doveadm;
use picket_agent::mail::forwarding::{self, Forwarding};
use picket_common::actions::mail::ItemOutcome;
use picket_e2e::dovecot::{self, Dovecot, QUARANTINE};
use picket_e2e::{eventually, Db, TestEnv};
use serde_json::json;
use uuid::Uuid;

const SCRIPT: &str = "require [\"copy\"];\r\n# to my own address too\r\nredirect :copy \"me@external.example\";\r\n\
                      if header :contains \"subject\" \"rota\" { redirect :copy \"bob@example.org\"; }\r\n";

fn message(n: u32) -> Vec<u8> {
    format!(
        "From: HR <hr@example.org>\r\nTo: alice@example.org\r\nSubject: Holiday rota {n}\r\n\
         Message-ID: <{}@example.org>\r\n\r\nSee you\r\n",
        Uuid::new_v4()
    )
    .into_bytes()
}

/// Deliver message `n` to alice: who it was forwarded to.
fn deliver(mail: &Dovecot, n: u32, wanted: usize) -> Vec<String> {
    let before = mail.smtp.received().len();
    mail.deliver("hr@example.org", &["alice".to_string()], &message(n));
    // Forwarding happens during delivery; a forward that should not come
    // is given the same time to show up.
    let all = mail.smtp.wait_for(before + wanted.max(1), Duration::from_secs(if wanted == 0 { 2 } else { 20 }));
    let subject = format!("Subject: Holiday rota {n}\r\n");
    let mut to: Vec<String> =
        all[before..].iter().filter(|(_, m)| m.contains(&subject)).flat_map(|(r, _)| r.clone()).collect();
    to.sort();
    to
}

/// The script's bytes as Dovecot keeps them in the user's Sieve storage.
fn sieve_get(mail: &Dovecot, user: &str, script: &str) -> String {
    let file = mail.path().join(format!("mail/{user}/sieve/{script}.sieve"));
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

#[test]
fn external_forwarding_is_listed_turned_off_and_restored_byte_for_byte() {
    if let Some(why) = dovecot::skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let mail = Dovecot::start(&["alice".to_string(), "bob".to_string()]);
    mail.sieve_put("alice", "forward", SCRIPT);
    assert_eq!(sieve_get(&mail, "alice", "forward"), SCRIPT, "ManageSieve stores the script as sent");
    assert_eq!(deliver(&mail, 1, 2), ["bob@example.org", "me@external.example"], "{}", mail.log());

    let dv = Doveadm::new(&mail.api_url(), &mail.api_key, Duration::from_secs(10)).expect("doveadm");
    let internal = vec!["example.org".to_string()];
    let listed = forwarding::list(&dv, &[], QUARANTINE, &internal).expect("list");
    assert_eq!((listed.users, listed.scripts.len()), (2, 1), "{listed:?}");
    let s = &listed.scripts[0];
    assert_eq!((s.user.as_str(), s.script.as_str(), s.active), ("alice", "forward", true));
    let found: Vec<(Option<&str>, bool, bool)> =
        s.redirects.iter().map(|r| (r.address.as_deref(), r.copy, r.external)).collect();
    assert_eq!(found, [(Some("me@external.example"), true, true), (Some("bob@example.org"), true, false)]);

    let records = tempfile::tempdir().expect("tempdir");
    let fw = Forwarding { dv: &dv, dir: records.path(), quarantine: QUARANTINE, internal: &internal };
    let off = Uuid::new_v4();
    let out = fw.disable(off, &[]).expect("disable");
    assert_eq!(out.scripts.len(), 1, "{out:?}");
    assert_eq!((out.scripts[0].outcome, out.scripts[0].redirects), (ItemOutcome::Done, 1), "{out:?}");
    let changed = sieve_get(&mail, "alice", "forward");
    assert!(!changed.contains("external.example") && changed.contains("bob@example.org"), "{changed}");
    assert_eq!(deliver(&mail, 2, 1), ["bob@example.org"], "internal forwarding goes on, external stops");
    assert_eq!(deliver(&mail, 3, 0), ["bob@example.org"]);
    // Alice keeps every message.
    assert_eq!(mail.doveadm_fetch("alice", "guid", &["mailbox", "INBOX"]).matches("guid=").count(), 3);

    // The same action again (an agent restarted mid-way) changes nothing.
    let again = fw.disable(off, &[]).expect("disable again");
    assert_eq!(again.scripts[0].outcome, ItemOutcome::Done);
    assert_eq!(sieve_get(&mail, "alice", "forward"), changed);
    let listed = forwarding::list(&dv, &[], QUARANTINE, &internal).expect("list");
    assert!(listed.scripts.iter().flat_map(|s| &s.redirects).all(|r| !r.external), "{listed:?}");

    // The undo: the exact bytes, still the active script, forwarding again.
    let back = fw.restore(Uuid::new_v4(), off).expect("restore");
    assert_eq!((back.scripts[0].outcome, back.scripts[0].redirects), (ItemOutcome::Done, 1), "{back:?}");
    assert_eq!(sieve_get(&mail, "alice", "forward"), SCRIPT);
    assert_eq!(deliver(&mail, 4, 2), ["bob@example.org", "me@external.example"]);

    // A script the user changed after the action is theirs: the undo
    // leaves it and says so.
    let off = Uuid::new_v4();
    assert_eq!(fw.disable(off, &["alice".to_string()]).expect("disable").scripts[0].outcome, ItemOutcome::Done);
    let edited = "redirect \"carol@elsewhere.example\";\r\n";
    mail.sieve_put("alice", "forward", edited);
    let back = fw.restore(Uuid::new_v4(), off).expect("restore");
    assert_eq!(back.scripts[0].outcome, ItemOutcome::Failed, "{back:?}");
    assert!(back.scripts[0].error.as_deref().unwrap_or_default().contains("changed since"), "{back:?}");
    assert_eq!(sieve_get(&mail, "alice", "forward"), edited);

    // An undo of nothing this host did is refused.
    assert!(fw.restore(Uuid::new_v4(), Uuid::new_v4()).expect_err("unknown").contains("no forwarding change"));
}

#[test]
fn a_redirect_to_an_address_known_only_at_delivery_counts_as_external() {
    if let Some(why) = dovecot::skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let mail = Dovecot::start(&["alice".to_string()]);
    // The address is a variable: where it goes is only known at delivery.
    let script =
        "require [\"variables\", \"copy\"];\r\nset \"to\" \"x@external.example\";\r\nredirect :copy \"${to}\";\r\n";
    mail.sieve_put("alice", "vars", script);
    let dv = Doveadm::new(&mail.api_url(), &mail.api_key, Duration::from_secs(10)).expect("doveadm");
    let internal = vec!["example.org".to_string()];
    let listed = forwarding::list(&dv, &[], QUARANTINE, &internal).expect("list");
    let r = &listed.scripts[0].redirects[0];
    assert_eq!((r.address.as_deref(), r.external), (None, true), "an address known only at delivery counts as outside");
    let records = tempfile::tempdir().expect("tempdir");
    let fw = Forwarding { dv: &dv, dir: records.path(), quarantine: QUARANTINE, internal: &internal };
    let out = fw.disable(Uuid::new_v4(), &[]).expect("disable");
    assert_eq!(out.scripts[0].outcome, ItemOutcome::Done);
    assert!(!sieve_get(&mail, "alice", "vars").contains("redirect"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_actions_list_turn_off_and_undo_external_forwarding_through_the_action_center() {
    if let Some(why) = dovecot::skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let mail = Dovecot::start(&["alice".to_string(), "bob".to_string()]);
    mail.sieve_put("alice", "forward", SCRIPT);
    // The administrator's global script forwards too (for one subject).
    mail.sieve_before(
        "10-archive",
        "require [\"copy\"];\nif header :contains \"subject\" \"legal hold\" { redirect :copy \"hold@archive.external.example\"; }\n",
    );
    let mut env = TestEnv::start(&Db::Sqlite).await;
    let (device, dir) = env.enroll("mail-1").await;
    let mut config = mail.agent_config();
    config.internal_domains = vec!["example.org".into()];
    let _agent = env.start_agent_with(device, &dir, move |c| c.mail = Some(config));
    eventually!(10, "online", env.device_status(device).await == "online");

    // Who forwards where, through picketctl as a responder.
    let ctl = env.ctl("mail-admin", "responder").await;
    let d = device.to_string();
    let listed = tokio::task::block_in_place(|| ctl.run(&["mail", "forwarding", &d, "--external"]));
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success(), "{text} {}", String::from_utf8_lossy(&listed.stderr));
    assert!(text.contains("me@external.example") && text.contains("external"), "{text}");
    assert!(!text.contains("bob@example.org"), "--external shows only the outside ones: {text}");
    assert!(text.contains("(sieve_before)") && text.contains("hold@archive.external.example"), "{text}");
    assert!(text.contains("10-archive.sieve"), "the global script is named by its file: {text}");

    // Turn it off through picketctl; the action center shows what changed.
    let off = tokio::task::block_in_place(|| {
        ctl.run(&["--json", "disable-external-forwarding", &d, "--user", "alice", "--comment", "exfiltration"])
    });
    assert!(off.status.success(), "{}", String::from_utf8_lossy(&off.stderr));
    let off: serde_json::Value = serde_json::from_slice(&off.stdout).expect("json");
    let id = off["id"].as_str().expect("id").to_string();
    eventually!(30, "disabled", matches!(env.action_status(&id).await.as_str(), "succeeded" | "failed"));
    let done = env.action(&id).await;
    let change = &done["result"]["output"]["scripts"][0];
    assert_eq!(
        (change["user"].as_str(), change["outcome"].as_str(), change["redirects"].as_u64()),
        (Some("alice"), Some("done"), Some(1)),
        "{done}"
    );
    assert_eq!(tokio::task::block_in_place(|| deliver(&mail, 10, 1)), ["bob@example.org"]);
    // The administrator's script is theirs: listed still, never changed.
    let listed = tokio::task::block_in_place(|| ctl.run(&["mail", "forwarding", &d, "--external"]));
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(text.contains("hold@archive.external.example") && !text.contains("me@external.example"), "{text}");

    // Undo: the exact script back, forwarding outside again.
    let restored = env.undo(&id, "restore_forwarding", 30).await;
    assert_eq!(restored["result"]["output"]["scripts"][0]["outcome"], "done", "{restored}");
    assert_eq!(sieve_get(&mail, "alice", "forward"), SCRIPT);
    assert_eq!(tokio::task::block_in_place(|| deliver(&mail, 11, 2)), ["bob@example.org", "me@external.example"]);

    // A bad user name never reaches Dovecot.
    let bad = env
        .admin(move |c| {
            c.post(
                &format!("/api/v1/devices/{device}/actions"),
                &json!({ "kind": "disable_external_forwarding", "params": { "users": ["*"] }, "comment": "x" }),
            )
        })
        .await;
    assert!(bad.is_err(), "{bad:?}");
}
