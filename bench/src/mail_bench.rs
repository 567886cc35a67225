//! Mail host figures (issue 15): a real Dovecot with many mailboxes, filled
//! over LMTP; the agent's mail adapter searches it and soft deletes a
//! cluster and puts it back — side by side with doveadm's own CLI doing
//! the same search and moves (`doveadm -A`), in the same run.
//!
//! `bench/run-mail.sh [MAILBOXES] [MESSAGES PER MAILBOX] [CLUSTER PER MAILBOX]`

use std::process::Command;
use std::time::{Duration, Instant};

use clap::Parser;
use picket_agent::mail::{batch, doveadm::Doveadm, search};
use picket_common::actions::mail::{MailMessages, MailSearch};
use picket_e2e::dovecot::Dovecot;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 1000)]
    mailboxes: usize,
    #[arg(long, default_value_t = 100)]
    messages: usize,
    /// Messages of the phishing cluster in each mailbox.
    #[arg(long, default_value_t = 10)]
    cluster: usize,
}

const CLUSTER_SUBJECT: &str = "Urgent: payroll update";

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.cluster <= args.messages, "the cluster is part of the messages");
    let users: Vec<String> = (1..=args.mailboxes).map(|i| format!("u{i:05}")).collect();
    let mail = Dovecot::start(&users);
    let t = Instant::now();
    for m in 0..args.messages {
        let subject = if m < args.cluster { format!("{CLUSTER_SUBJECT} #{m}") } else { format!("Newsletter {m}") };
        let body = format!(
            "From: Payroll <payroll@pay-roll.example>\r\nTo: staff@example.org\r\nSubject: {subject}\r\n\
             Message-ID: <bench-{m}@pay-roll.example>\r\nDate: Mon, 7 Dec 2026 01:00:00 +0000\r\n\r\n{}\r\n",
            "Please confirm your account at http://pay-roll.example/login\r\n".repeat(20)
        );
        mail.deliver("payroll@pay-roll.example", &users, body.as_bytes());
    }
    let total = args.mailboxes * args.messages;
    let cluster = args.mailboxes * args.cluster;
    println!(
        "filled {} mailboxes with {total} messages over LMTP in {:.1} s",
        args.mailboxes,
        t.elapsed().as_secs_f64()
    );

    let dv = Doveadm::new(&mail.api_url(), &mail.api_key, Duration::from_secs(10)).map_err(anyhow::Error::msg)?;
    let query = MailSearch {
        subject: Some("payroll update".into()),
        limit: u32::try_from(cluster).unwrap_or(u32::MAX).clamp(1, 10_000),
        ..Default::default()
    };
    // Warm: the first search builds Dovecot's caches for these headers.
    let t = Instant::now();
    let found = search::search(&dv, &query, "picket-quarantine")?;
    let cold = t.elapsed();
    let t = Instant::now();
    let found2 = search::search(&dv, &query, "picket-quarantine")?;
    let warm = t.elapsed();
    anyhow::ensure!(
        found.messages.len() == cluster && found2.messages.len() == cluster,
        "search found {}",
        found.messages.len()
    );
    let by_id =
        MailSearch { message_id: Some("<bench-0@pay-roll.example>".into()), limit: 10_000, ..Default::default() };
    let t = Instant::now();
    let one = search::search(&dv, &by_id, "picket-quarantine")?;
    let by_id_time = t.elapsed();

    let conf = mail.path().join("dovecot.conf");
    let doveadm = |args: &[&str]| -> anyhow::Result<Duration> {
        let t = Instant::now();
        let out = Command::new("/usr/bin/doveadm").arg("-c").arg(&conf).args(args).output()?;
        anyhow::ensure!(out.status.success(), "doveadm {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        Ok(t.elapsed())
    };
    // The peer walks the bench's users (`-u u*`): `-A` would also walk the
    // quarantine account, which has none of these folders.
    let peer_search = doveadm(&["search", "-u", "u*", "subject", "payroll update"])?;

    println!("search, subject over {total} messages in {} mailboxes: {} found", args.mailboxes, found.messages.len());
    println!("  picket mail_search   first {:>8.3} s, again {:>8.3} s", cold.as_secs_f64(), warm.as_secs_f64());
    println!("  doveadm search -u 'u*'               {:>8.3} s", peer_search.as_secs_f64());
    println!("search by Message-ID ({} found): {:.3} s", one.messages.len(), by_id_time.as_secs_f64());

    let records = tempfile::tempdir()?;
    let which = MailMessages { messages: Vec::new(), search: Some(query.clone()) };
    let id = uuid::Uuid::new_v4();
    let t = Instant::now();
    let batches = batch::Batches { dv: &dv, dir: records.path(), quarantine: "picket-quarantine" };
    let moved = batches
        .move_messages(id, "soft_delete_email", &which, "Recoverable Items", batch::Route::default(), &|_, _| {})
        .map_err(anyhow::Error::msg)?;
    let soft = t.elapsed();
    anyhow::ensure!(moved.counts.done as usize == cluster, "soft delete: {:?}", moved.counts);
    let t = Instant::now();
    let back =
        batches.restore(uuid::Uuid::new_v4(), "restore_email", id, None, &|_, _| {}).map_err(anyhow::Error::msg)?;
    let undo = t.elapsed();
    anyhow::ensure!(back.counts.done as usize == cluster, "restore: {:?}", back.counts);
    // The peer: doveadm's CLI moving the same messages there and back.
    let peer_move =
        doveadm(&["move", "-u", "u*", "Recoverable Items", "mailbox", "INBOX", "subject", "payroll update"])?;
    let peer_back =
        doveadm(&["move", "-u", "u*", "INBOX", "mailbox", "Recoverable Items", "subject", "payroll update"])?;
    let rate = |d: Duration| cluster as f64 / d.as_secs_f64();
    println!("soft delete of a {cluster}-message cluster across {} mailboxes:", args.mailboxes);
    println!(
        "  picket soft_delete_email {:>8.3} s  {:>8.0} messages/s (per-message results, record, check)",
        soft.as_secs_f64(),
        rate(soft)
    );
    println!("  picket restore_email     {:>8.3} s  {:>8.0} messages/s", undo.as_secs_f64(), rate(undo));
    println!(
        "  doveadm move -u 'u*'     {:>8.3} s  {:>8.0} messages/s (no results, no undo)",
        peer_move.as_secs_f64(),
        rate(peer_move)
    );
    println!("  doveadm move (back)      {:>8.3} s  {:>8.0} messages/s", peer_back.as_secs_f64(), rate(peer_back));
    println!("  ratio picket / doveadm: soft delete {:.2}x the time", soft.as_secs_f64() / peer_move.as_secs_f64());
    Ok(())
}
