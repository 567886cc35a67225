//! Time-of-click protection on a real Dovecot: the coordinator's click
//! listener gives the mail host's agent its link key; Dovecot's LMTP runs
//! `picket-linkwrap` (a Sieve filter before the user's scripts) on each
//! delivery; IMAP shows the links wrapped; following one goes through the
//! click listener (302 to the original, logged), an altered one gets 400,
//! and a signed message is delivered byte for byte.

use std::time::Duration;

use picket_e2e::dovecot::{self, Dovecot};
use picket_e2e::{eventually, linkwrap_binary, Db, TestEnv};
use serde_json::json;
use uuid::Uuid;

const PLAIN_LINK: &str = "https://evil.example/login?user=alice&next=%2Fhome";
const HTML_LINK: &str = "http://phish.example/a?x=1&y=2";

fn multipart(message_id: &str) -> String {
    format!(
        "From: IT <it@phish.example>\r\nTo: alice@example.org\r\nSubject: Password expiry\r\n\
         Message-ID: <{message_id}>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n\
         --alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         Your password expires today. Renew it at {PLAIN_LINK}.\r\n\
         --alt\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
         <p>Renew it <a href=3D\"http://phish.example/a?x=3D1&amp;y=3D2\">here</a>.</p>\r\n\
         --alt--\r\n"
    )
}

fn signed(message_id: &str) -> String {
    format!(
        "From: Bank <news@bank.example>\r\nTo: alice@example.org\r\nSubject: Statement\r\n\
         Message-ID: <{message_id}>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=\"sig\"\r\n\r\n\
         --sig\r\nContent-Type: text/plain\r\n\r\nYour statement: https://bank.example/statement\r\n\
         --sig\r\nContent-Type: application/pkcs7-signature; name=\"smime.p7s\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
         MIAGCSqGSIb3DQEHAqCAMIACAQExDzANBglghkgBZQMEAgEFADCABgkqhkiG9w0BBwEAAKCAMIID\r\n\
         --sig--\r\n"
    )
}

/// The wrapped links (`<click url>/l/v1/…`) in a stored message, in order
/// (quoted-printable soft line breaks joined first).
fn wrapped_links(stored: &str, base: &str) -> Vec<String> {
    let text = stored.replace("=\r\n", "");
    let prefix = format!("{base}/l/v1/");
    let mut found = Vec::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find(&prefix) {
        let tail: String =
            rest[at + prefix.len()..].chars().take_while(|c| c.is_ascii_alphanumeric() || "-_/".contains(*c)).collect();
        rest = &rest[at + prefix.len() + tail.len()..];
        found.push(format!("{prefix}{tail}"));
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_are_wrapped_at_delivery_and_checked_at_click_time() {
    if let Some(why) = dovecot::skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let mut env =
        TestEnv::start_with(&Db::Sqlite, |c| c.click.listen = Some("127.0.0.1:0".parse().expect("addr"))).await;
    let click = env.click();
    let base = click.url("");
    let mail = tokio::task::block_in_place(|| Dovecot::start(&["alice".to_string()]));
    let key_file = mail.path().join("picket-link.key");
    let mut config = mail.agent_config();
    config.internal_domains = vec!["example.org".into()];
    config.link_key_file = Some(key_file.clone());
    config.link_key_group = "dovecot".into();
    let (device, dir) = env.enroll("mail-1").await;
    let _agent = env.start_agent_with(device, &dir, move |c| c.mail = Some(config));
    eventually!(10, "online", env.device_status(device).await == "online");
    // The agent stores the key the coordinator sent: root's, the mail group reads it.
    eventually!(10, "link key stored", key_file.exists());
    {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(&key_file).expect("key file");
        let dovecot_gid = nix::unistd::Group::from_name("dovecot").expect("group").expect("dovecot group").gid.as_raw();
        assert_eq!((meta.mode() & 0o777, meta.uid(), meta.gid()), (0o640, 0, dovecot_gid));
    }
    mail.wrap_links(&linkwrap_binary(), &key_file);

    // Deliver through LMTP; read as alice does over IMAP.
    let id = format!("{}@phish.example", Uuid::new_v4());
    tokio::task::block_in_place(|| mail.deliver("it@phish.example", &["alice".to_string()], multipart(&id).as_bytes()));
    let stored = tokio::task::block_in_place(|| {
        let mut imap = mail.imap("alice");
        let uid = *imap.find("INBOX", &id).first().unwrap_or_else(|| panic!("delivered: {}", mail.log()));
        imap.raw(uid)
    });
    assert!(!stored.contains("evil.example") && !stored.contains("phish.example/a"), "links left: {stored}");
    assert!(stored.contains("Subject: Password expiry\r\n") && stored.contains("--alt--"), "{stored}");
    let links = wrapped_links(&stored, &base);
    assert_eq!(links.len(), 2, "one plain, one HTML link wrapped: {stored}\n{}", mail.log());
    let path = |l: &str| l[base.len()..].to_string();

    // Following each goes to its original, with no other stop.
    let followed = tokio::task::block_in_place(|| click.get(&path(&links[0]), ""));
    assert_eq!((followed.status, followed.header("location").as_str()), (302, PLAIN_LINK), "{}", followed.body);
    assert_eq!(followed.header("cache-control"), "no-store");
    let followed = tokio::task::block_in_place(|| click.get(&path(&links[1]), ""));
    assert_eq!((followed.status, followed.header("location").as_str()), (302, HTML_LINK), "{}", followed.body);

    // Any altered byte — the URL, the message reference, the signature — is refused.
    let p = path(&links[0]);
    let parts: Vec<&str> = p.trim_start_matches("/l/v1/").split('/').collect();
    let other_url = base64_url("https://elsewhere.example/");
    for tampered in [
        format!("/l/v1/{other_url}/{}/{}", parts[1], parts[2]),
        format!("/l/v1/{}/{}/{}", parts[0], parts[1], "A".repeat(parts[2].len())),
        format!("/l/v1/{}/{}x/{}", parts[0], parts[1], parts[2]),
        "/l/v1/garbage".to_string(),
    ] {
        let refused = tokio::task::block_in_place(|| click.get(&tampered, ""));
        assert_eq!(refused.status, 400, "{tampered}: {}", refused.body);
        assert!(refused.header("location").is_empty());
        assert!(refused.body.contains("not valid"), "{}", refused.body);
    }

    // The clicks are logged with who and which message; refused ones are not.
    let store = &env.coordinator().store;
    eventually!(10, "clicks logged", store.clicks(None, None, 10).await.expect("clicks").len() == 2);
    let first_clicks = store.clicks(None, None, 10).await.expect("clicks");
    assert!(first_clicks.iter().all(|c| c.verdict == "allowed"), "{first_clicks:?}");
    let logged = store.clicks(Some(PLAIN_LINK), None, 10).await.expect("clicks");
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!(
        (logged[0].device_id, logged[0].recipient.as_str(), logged[0].message_id.as_str(), logged[0].verdict.as_str()),
        (device, "alice", id.as_str(), "allowed")
    );

    // Block the link (picketctl, as a responder): the coordinator runs the
    // action at once, and the link delivered before it now stops at the
    // block page — no redirect, the reason shown.
    let ctl = env.ctl("soc", "responder").await;
    let d = device.to_string();
    let blocked = tokio::task::block_in_place(|| {
        ctl.run(&["--json", "block-url", &d, PLAIN_LINK, "--expires", "7d", "--comment", "credential phishing"])
    });
    assert!(blocked.status.success(), "{}", String::from_utf8_lossy(&blocked.stderr));
    let blocked: serde_json::Value = serde_json::from_slice(&blocked.stdout).expect("json");
    assert_eq!(blocked["status"], "succeeded", "{blocked}");
    let block_action = blocked["id"].as_str().expect("id").to_string();
    let page = tokio::task::block_in_place(|| click.get(&path(&links[0]), ""));
    assert_eq!((page.status, page.header("location").as_str()), (403, ""), "{}", page.body);
    assert!(page.body.contains("This link is blocked") && page.body.contains("credential phishing"), "{}", page.body);
    // The HTML link is on another domain: still allowed, until the domain is blocked.
    let other = tokio::task::block_in_place(|| click.get(&path(&links[1]), ""));
    assert_eq!(other.status, 302);
    let domain = tokio::task::block_in_place(|| {
        ctl.run(&["--json", "block-url", &d, "phish.example", "--domain", "--comment", "phishing domain"])
    });
    assert!(domain.status.success(), "{}", String::from_utf8_lossy(&domain.stderr));
    let page = tokio::task::block_in_place(|| click.get(&path(&links[1]), ""));
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(page.body.contains("the site phish.example is blocked"), "{}", page.body);

    // The click log says who clicked what, blocked or not; the blocked
    // click is an alert of the mail host.
    eventually!(10, "blocked clicks logged", {
        let c = store.clicks(Some(PLAIN_LINK), Some("alice"), 10).await.expect("clicks");
        c.len() == 2 && c[0].verdict == "blocked" && c[0].block_id.map(|b| b.to_string()) == Some(block_action.clone())
    });
    let listed = tokio::task::block_in_place(|| ctl.run(&["mail", "clicks", "--recipient", "alice"]));
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success() && text.contains("blocked") && text.contains(PLAIN_LINK), "{text}");
    let alerts = env.admin(move |c| c.get(&format!("/api/v1/alerts?device={device}"))).await.expect("alerts");
    let alert = alerts["items"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["detection"]["path"] == format!("click:alice {PLAIN_LINK}")))
        .unwrap_or_else(|| panic!("a blocked-click alert: {alerts}"));
    assert_eq!(alert["title"], format!("alice clicked a blocked URL: {PLAIN_LINK}"), "{alert}");
    assert_eq!((&alert["detection"]["rule"], &alert["severity"]), (&json!("blocked_url_clicked"), &json!("malicious")));
    let list = tokio::task::block_in_place(|| ctl.run(&["mail", "blocked-urls"]));
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(text.contains("phish.example") && text.contains(&block_action), "{text}");

    // The console shows the blocks and the clicks (a viewer may look).
    let web = env.web();
    let (cookie, _) = tokio::task::block_in_place(|| web.session("admin", &env.admin_password()));
    let page = tokio::task::block_in_place(|| web.get("/mail/links", &cookie));
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("phish.example") && page.body.contains("credential phishing"), "{}", page.body);
    assert!(
        page.body.contains(&format!("/actions/{block_action}")) && page.body.contains("badge blocked"),
        "{}",
        page.body
    );

    // `PICKET_SCREENSHOTS=DIR`: the page as Chromium shows it.
    if let Some(dir) = std::env::var_os("PICKET_SCREENSHOTS") {
        let (base, password) = (env.api_url(), env.admin_password());
        tokio::task::block_in_place(|| {
            let browser = picket_e2e::browser::Browser::start();
            browser.sign_in(&base, "admin", &password);
            browser.goto(&format!("{base}/mail/links"));
            browser.wait_for("#blocked-urls", 10);
            browser.screenshot(&std::path::PathBuf::from(dir).join("time-of-click.png"));
        });
    }

    // Undo lifts the block: the link leads to its original again.
    let lifted = env.undo(&block_action, "unblock_url", 10).await;
    assert_eq!(lifted["result"]["output"]["removed"], true, "{lifted}");
    let followed = tokio::task::block_in_place(|| click.get(&path(&links[0]), ""));
    assert_eq!((followed.status, followed.header("location").as_str()), (302, PLAIN_LINK));

    // A block needs an http(s) link or a domain name; nothing else is queued.
    for bad in [["javascript:alert(1)", "--prefix"], ["Phish.Example", "--domain"]] {
        let out = tokio::task::block_in_place(|| ctl.run(&["block-url", &d, bad[0], bad[1], "--comment", "x"]));
        assert!(!out.status.success(), "{bad:?} accepted");
    }

    // A signed message is delivered byte for byte; Dovecot's log says why.
    let signed_id = format!("{}@bank.example", Uuid::new_v4());
    let original = signed(&signed_id);
    tokio::task::block_in_place(|| mail.deliver("news@bank.example", &["alice".to_string()], original.as_bytes()));
    let stored = tokio::task::block_in_place(|| {
        let mut imap = mail.imap("alice");
        let uid = *imap.find("INBOX", &signed_id).first().expect("delivered");
        imap.raw(uid)
    });
    assert!(stored.contains(&original), "the signed message changed: {stored}");
    eventually!(5, "reported", mail.log().contains("left as it is: signed or encrypted (multipart/signed)"));
}

/// Issue 15 item 6: a mail scan checks the links of delivered mail (seen
/// through their wrapping) against the host's URL blocklist, which the
/// coordinator sends the host after each block; a blocked link raises an
/// email alert, whose investigation gathers the cluster by the link and
/// proposes its quarantine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_scan_flags_blocked_links_and_the_investigation_quarantines_their_cluster() {
    if let Some(why) = dovecot::skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let mut env = TestEnv::start_with(&Db::Sqlite, |c| {
        c.click.listen = Some("127.0.0.1:0".parse().expect("addr"));
        c.investigations.automatic = true;
    })
    .await;
    let users = ["alice".to_string(), "bob".to_string()];
    let mail = tokio::task::block_in_place(|| Dovecot::start(&users));
    let key_file = mail.path().join("picket-link.key");
    let mut config = mail.agent_config();
    config.internal_domains = vec!["example.org".into()];
    config.link_key_file = Some(key_file.clone());
    config.link_key_group = "dovecot".into();
    let (host, dir) = env.enroll("mail-scan-links").await;
    let _agent = env.start_agent_with(host, &dir, move |c| c.mail = Some(config));
    eventually!(10, "link key stored", key_file.exists());
    mail.wrap_links(&linkwrap_binary(), &key_file);
    let id = format!("{}@phish.example", Uuid::new_v4());
    let benign = "From: HR <hr@example.org>\r\nTo: alice@example.org\r\nSubject: Lunch\r\n\
        Message-ID: <lunch@example.org>\r\n\r\nMenu: https://intranet.example.org/menu\r\n";
    tokio::task::block_in_place(|| {
        mail.deliver("it@phish.example", &users, multipart(&id).as_bytes());
        mail.deliver("hr@example.org", &["alice".to_string()], benign.as_bytes());
    });

    // Nothing blocked yet: the scan reads the links and flags none.
    let search = json!({ "search": { "since": "2020-01-01" } });
    let clean = env.act(host, "mail_scan", search.clone(), 60).await;
    let out = &clean["result"]["output"];
    assert_eq!((out["scanned"].as_u64(), out["messages"].as_array().map(Vec::len)), (Some(3), Some(0)), "{clean}");
    assert!(out["links"].as_u64() >= Some(5), "wrapped links and their originals: {clean}");

    // Block the phishing domain; the host gets its new list with the result.
    let ctl = env.ctl("soc", "responder").await;
    let h = host.to_string();
    let blocked = tokio::task::block_in_place(|| {
        ctl.run(&["--json", "block-url", &h, "phish.example", "--domain", "--comment", "phishing domain"])
    });
    assert!(blocked.status.success(), "{}", String::from_utf8_lossy(&blocked.stderr));
    let blocked: serde_json::Value = serde_json::from_slice(&blocked.stdout).expect("json");
    assert_eq!(blocked["status"], "succeeded", "{blocked}");
    let block_id = blocked["id"].as_str().expect("id").to_string();

    let scan = env.act(host, "mail_scan", search.clone(), 60).await;
    let out = &scan["result"]["output"];
    assert_eq!(out["url_blocks"], 1, "{scan}");
    let flagged = out["messages"].as_array().expect("messages");
    assert_eq!(flagged.len(), 2, "alice's and bob's copies, not the lunch menu: {scan}");
    for m in flagged {
        assert_eq!(
            m["blocked_links"],
            json!([{ "url": HTML_LINK, "block_id": block_id, "match_type": "domain", "value": "phish.example" }]),
            "{scan}"
        );
    }
    // One email alert of the host for the link, both copies under it.
    let alerts = env.admin(move |c| c.get(&format!("/api/v1/alerts?device={host}"))).await.expect("alerts");
    let alert = alerts["items"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["detection"]["rule"] == "blocked_url"))
        .cloned()
        .unwrap_or_else(|| panic!("a blocked-link alert: {alerts}"));
    assert_eq!(
        (alert["title"].as_str(), alert["count"].as_u64(), alert["severity"].as_str()),
        (Some(format!("mail links to a blocked URL: {HTML_LINK}").as_str()), Some(2), Some("malicious")),
        "{alert}"
    );
    let alert_id = alert["id"].as_str().expect("id").to_string();
    let paths = env.admin(move |c| c.get(&format!("/api/v1/alerts/{alert_id}"))).await.expect("alert");
    for user in ["alice", "bob"] {
        assert!(
            paths.to_string().contains(&format!("mail:{user}/INBOX/")) && paths.to_string().contains(HTML_LINK),
            "{user}: {paths}"
        );
    }

    // The investigation: the link's verdict from the coordinator's own
    // blocklist, the cluster found by the link, its quarantine proposed.
    let inv = env.investigation_with_evidence("mail:").await;
    assert_eq!((inv["subject"]["url"].as_str(), inv["device_id"].as_str()), (Some(HTML_LINK), Some(h.as_str())));
    let evidence = &inv["evidence"];
    assert_eq!((evidence["verdict"].as_str(), evidence["cluster"]["messages"].as_u64()), (Some("malicious"), Some(2)));
    let subject = evidence["items"].as_array().and_then(|i| i.iter().find(|i| i["subject"] == true)).cloned();
    assert!(subject.is_some_and(|s| s["why"].as_str().is_some_and(|w| w.contains(&block_id))), "{inv}");
    let path = format!("/api/v1/actions?device={host}&kind=quarantine_email");
    let pending = env.admin(move |c| c.get(&path)).await.expect("actions");
    let proposal = pending["items"][0].clone();
    assert_eq!(proposal["status"], "pending_approval", "{pending}");
    assert_eq!(proposal["params"]["search"]["url"], HTML_LINK, "{proposal}");
    let approver = env.token("approver", "approver").await;
    let aid = proposal["id"].as_str().expect("id").to_string();
    env.api(&approver, move |c| c.post(&format!("/api/v1/actions/{aid}/approve"), &json!({ "comment": "phish" })))
        .await
        .expect("approve");
    eventually!(60, "cluster quarantined", {
        tokio::task::block_in_place(|| users.iter().all(|u| mail.imap(u).find("INBOX", &id).is_empty()))
    });
    let lunch = tokio::task::block_in_place(|| mail.imap("alice").find("INBOX", "<lunch@example.org>"));
    assert_eq!(lunch.len(), 1, "the benign message stays");
}

/// The store's side, on each database: a mail host's blocks in force,
/// newest first (others' and lifted or expired ones left out), and the
/// click log written many rows a statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hosts_blocks_and_a_batch_of_clicks_are_stored_on_each_database() {
    use picket_coordinator::store::{Click, UrlBlock};
    for db in picket_e2e::databases().await {
        let env = TestEnv::start(&db).await;
        let store = &env.coordinator().store;
        let (host, other) = (Uuid::new_v4(), Uuid::new_v4());
        let now = picket_coordinator::clock::now_ms();
        let block = |device, value: &str, created_at, expires_at| UrlBlock {
            id: Uuid::new_v4(),
            device_id: device,
            match_kind: "domain".into(),
            value: value.into(),
            comment: "t".into(),
            created_by: "t".into(),
            created_at,
            expires_at,
        };
        let blocks = [
            block(host, "old.example", now - 2_000, None),
            block(host, "new.example", now - 1_000, Some(now + 60_000)),
            block(host, "gone.example", now - 3_000, Some(now - 1)),
            block(host, "lifted.example", now - 500, None),
            block(other, "theirs.example", now, None),
        ];
        store.insert_url_blocks(&blocks).await.expect("blocks");
        assert!(store.remove_url_block(blocks[3].id, host, "t", now).await.expect("lift"));
        let mine: Vec<String> =
            store.url_blocks_of(host, now).await.expect("read").into_iter().map(|b| b.value).collect();
        assert_eq!(mine, ["new.example", "old.example"], "{db:?}");

        let clicks: Vec<Click> = (0..250)
            .map(|i| Click {
                id: Uuid::new_v4(),
                at: now + i,
                device_id: host,
                recipient: format!("user{}", i % 7),
                message_id: format!("m{i}@x"),
                url: format!("https://site{i}.example/"),
                verdict: if i % 2 == 0 { "allowed" } else { "blocked" }.into(),
                block_id: (i % 2 == 1).then_some(blocks[0].id),
                client: "127.0.0.1".into(),
            })
            .collect();
        store.insert_clicks(&clicks).await.expect("clicks");
        assert_eq!(store.click_count().await.expect("count"), 250, "{db:?}");
        let one = store.clicks(Some("https://site249.example/"), None, 10).await.expect("clicks");
        assert_eq!((one.len(), one[0].block_id), (1, Some(blocks[0].id)), "{db:?}");
    }
}

fn base64_url(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

#[test]
fn without_a_key_mail_is_delivered_unchanged() {
    if let Some(why) = dovecot::skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    // The filter fails safe: no key file yet → Dovecot delivers the message as it came.
    let mail = Dovecot::start(&["alice".to_string()]);
    mail.wrap_links(&linkwrap_binary(), &mail.path().join("no-such.key"));
    let id = format!("{}@phish.example", Uuid::new_v4());
    let message = multipart(&id);
    mail.deliver("it@phish.example", &["alice".to_string()], message.as_bytes());
    let mut imap = mail.imap("alice");
    let uid = *imap.find("INBOX", &id).first().unwrap_or_else(|| panic!("delivered: {}", mail.log()));
    assert!(imap.raw(uid).contains(&message));
    // Dovecot writes the filter's stderr to its log: wait until it has.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !mail.log().contains("links of mail to alice are not wrapped") {
        assert!(std::time::Instant::now() < deadline, "the reason is not in Dovecot's log: {}", mail.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Issue 16 (speed): the LMTP proxy way of wrapping. Each recipient's copy
/// is wrapped for that recipient, Dovecot's own answers reach the MTA
/// (an unknown user is refused at RCPT), a signed message and a line
/// starting with a dot arrive byte for byte, no key means unchanged mail,
/// and a stopped Dovecot means a temporary failure — the MTA keeps the
/// message — never a lost one.
#[test]
fn the_lmtp_proxy_wraps_each_recipients_copy_and_loses_no_mail() {
    use picket_e2e::dovecot::{lmtp, LinkProxy};
    if let Some(why) = dovecot::skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let users = ["alice".to_string(), "bob".to_string()];
    let mut mail = Dovecot::start(&users);
    let (device, key) = (Uuid::new_v4(), [7u8; 32]);
    let base = "https://click.example.org:7444";
    let key_file = mail.path().join("proxy-link.key");
    let key_text = format!("click_url = \"{base}\"\ndevice = \"{device}\"\nkey = \"{}\"\n", "07".repeat(32));
    std::fs::write(&key_file, &key_text).expect("key");
    let log = mail.path().join("proxy.log");
    let mut proxy = LinkProxy::start(&linkwrap_binary(), &mail, &key_file, Some(&log));

    // Two users and one Dovecot does not have.
    let id = format!("{}@phish.example", Uuid::new_v4());
    let to = ["alice".to_string(), "nobody".to_string(), "bob".to_string()];
    let sent = lmtp(proxy.addr, "it@phish.example", &to, multipart(&id).as_bytes()).expect("delivered");
    assert!(sent.rcpt[0].starts_with("250") && sent.rcpt[2].starts_with("250"), "{sent:?}");
    assert!(sent.rcpt[1].starts_with("550"), "Dovecot's own refusal of an unknown user: {sent:?}");
    assert!(sent.data.len() == 2 && sent.data.iter().all(|r| r.starts_with("250")), "{sent:?}");
    for user in &users {
        let mut imap = mail.imap(user);
        let uid = *imap.find("INBOX", &id).first().unwrap_or_else(|| panic!("delivered to {user}: {}", mail.log()));
        let links = wrapped_links(&imap.raw(uid), base);
        assert_eq!(links.len(), 2, "both links wrapped for {user}");
        for link in links {
            let path = &link[base.len()..];
            let link = picket_common::links::parse(path).and_then(|l| l.verify(&key)).expect("signed with the key");
            assert_eq!((link.recipient.as_str(), link.device), (user.as_str(), device), "signed for its own recipient");
            assert!([PLAIN_LINK, HTML_LINK].contains(&link.url.as_str()), "{}", link.url);
        }
    }

    // Signed, with a line starting with a dot: byte for byte.
    let signed_id = format!("{}@bank.example", Uuid::new_v4());
    let original = signed(&signed_id).replace("Your statement:", ".a line with a dot\r\nYour statement:");
    let sent = lmtp(proxy.addr, "news@bank.example", &users[..1], original.as_bytes()).expect("delivered");
    assert!(sent.data[0].starts_with("250"), "{sent:?}");
    let mut imap = mail.imap("alice");
    let uid = *imap.find("INBOX", &signed_id).first().expect("delivered");
    assert!(imap.raw(uid).contains(&original), "left byte for byte");

    // No key (yet): the message goes through unchanged, and the log says why.
    let away = mail.path().join("key-away");
    std::fs::rename(&key_file, &away).expect("move the key away");
    let plain_id = format!("{}@phish.example", Uuid::new_v4());
    let message = multipart(&plain_id);
    let sent = lmtp(proxy.addr, "it@phish.example", &users[..1], message.as_bytes()).expect("delivered");
    assert!(sent.data[0].starts_with("250"), "{sent:?}");
    let uid = *imap.find("INBOX", &plain_id).first().expect("delivered");
    assert!(imap.raw(uid).contains(&message), "delivered as it came");
    let said = std::fs::read_to_string(&log).expect("log");
    assert!(said.contains("proxy-link.key") && said.contains("not wrapped"), "{said}");
    std::fs::rename(&away, &key_file).expect("key back");
    drop(imap);

    // Dovecot down: a temporary failure the MTA retries on, and the proxy lives on.
    mail.stop();
    let refused = lmtp(proxy.addr, "it@phish.example", &users[..1], message.as_bytes()).expect_err("not taken");
    assert!(refused.starts_with("451 4.4.0"), "{refused}");
    assert!(proxy.child.try_wait().expect("status").is_none(), "the proxy is still running");
    // An MTA that talks nonsense gets an answer and a closed connection.
    let mut raw = std::net::TcpStream::connect(proxy.addr).expect("connect");
    std::io::Write::write_all(&mut raw, &[b'x'; 4096]).expect("write");
    let mut answer = String::new();
    let _ = std::io::Read::read_to_string(&mut raw, &mut answer);
    assert!(answer.starts_with("220 ") && answer.contains("\r\n500 5.5.2 line too long"), "{answer}");
    mail.restart();
    let again_id = format!("{}@phish.example", Uuid::new_v4());
    let sent = lmtp(proxy.addr, "it@phish.example", &users[..1], multipart(&again_id).as_bytes()).expect("delivered");
    assert!(sent.data[0].starts_with("250"), "{sent:?}");
    let mut imap = mail.imap("alice");
    let uid = *imap.find("INBOX", &again_id).first().expect("delivered after Dovecot came back");
    assert_eq!(wrapped_links(&imap.raw(uid), base).len(), 2);
}
