//! A real Dovecot for the mail tests (Debian's `dovecot-imapd`,
//! `dovecot-lmtpd`): its own configuration, users, maildirs, run dir and
//! log in a temp dir, listening on free loopback ports only — it never
//! touches the host's Dovecot. Mail arrives through LMTP (as from an MTA)
//! and is read back through IMAP as the user's mail client would. Sieve
//! runs at delivery; users put their scripts over ManageSieve; what a
//! script forwards reaches [`Smtp`], a listener standing for the next
//! mail server (Dovecot's `submission_host`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Why the mail tests cannot run here (None: they can). On CI a missing
/// Dovecot is an error, not a skip.
pub fn skip_reason() -> Option<String> {
    let why = if !nix::unistd::geteuid().is_root() {
        "not root (Dovecot drops privileges to its own users)".to_string()
    } else if !Path::new("/usr/sbin/dovecot").exists() || !Path::new("/usr/bin/doveadm").exists() {
        "Dovecot is not installed (apt install dovecot-imapd dovecot-lmtpd)".to_string()
    } else {
        return None;
    };
    assert!(std::env::var_os("CI").is_none(), "the mail tests must run on CI: {why}");
    Some(why)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

pub struct Dovecot {
    dir: tempfile::TempDir,
    pub imap: u16,
    pub lmtp: u16,
    pub api: u16,
    pub managesieve: u16,
    pub api_key: String,
    /// Where forwarded mail goes.
    pub smtp: Smtp,
    conf: PathBuf,
    running: bool,
}

/// Every user's password.
pub const PASSWORD: &str = "secret";

/// The account quarantined mail goes to (the agent's default): no
/// password can match (`{CRYPT}!`) and `nologin=y` refuses every login.
pub const QUARANTINE: &str = "picket-quarantine";

impl Dovecot {
    /// Start a Dovecot with these users (password [`PASSWORD`]).
    pub fn start(users: &[String]) -> Self {
        let dir = tempfile::Builder::new().prefix("picket-dovecot").tempdir().expect("tempdir");
        let d = dir.path();
        for sub in ["run", "log", "mail", "sieve-before", "sieve-filters"] {
            std::fs::create_dir(d.join(sub)).expect("mkdir");
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let smtp = Smtp::start();
        let api_key = format!("k{}", uuid::Uuid::new_v4().simple());
        let mut users_file: String = users.iter().map(|u| format!("{u}:{{PLAIN}}{PASSWORD}::::::\n")).collect();
        users_file.push_str(&format!("{QUARANTINE}:{{CRYPT}}!::::::nologin=y\n"));
        std::fs::write(d.join("users"), users_file).expect("users");
        let conf = d.join("dovecot.conf");
        let ok = Command::new("chown").args(["-R", "dovecot:dovecot"]).arg(d.join("mail")).status().expect("chown");
        assert!(ok.success());
        let mut me = Self { dir, imap: 0, lmtp: 0, api: 0, managesieve: 0, api_key, smtp, conf, running: false };
        // A port found free may be taken by another test before Dovecot
        // binds it: then it starts again on other ports.
        for attempt in 1.. {
            (me.imap, me.lmtp, me.api, me.managesieve) = (free_port(), free_port(), free_port(), free_port());
            let ports =
                Ports { imap: me.imap, lmtp: me.lmtp, api: me.api, managesieve: me.managesieve, smtp: me.smtp.port };
            std::fs::write(&me.conf, config(me.dir.path(), &ports, &me.api_key)).expect("config");
            match me.try_run() {
                Ok(()) => break,
                Err(said) if said.contains("in use") && attempt < 5 => continue,
                Err(said) => panic!("dovecot did not start: {said}"),
            }
        }
        me
    }

    fn run(&mut self) {
        if let Err(said) = self.try_run() {
            panic!("dovecot did not start: {said}");
        }
    }

    fn try_run(&mut self) -> Result<(), String> {
        // The master forks and keeps its standard streams: a pipe would
        // never reach end of file, so they go to a file.
        let errors = self.path().join("log/start.err");
        let err = std::fs::File::create(&errors).expect("start.err");
        let status = Command::new("/usr/sbin/dovecot")
            .arg("-c")
            .arg(&self.conf)
            .stdin(std::process::Stdio::null())
            .stdout(err.try_clone().expect("clone"))
            .stderr(err)
            .status()
            .expect("dovecot");
        let said = std::fs::read_to_string(&errors).unwrap_or_default();
        if !status.success() {
            return Err(said);
        }
        self.running = true;
        let deadline = Instant::now() + Duration::from_secs(20);
        for port in [self.imap, self.lmtp, self.api, self.managesieve] {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < deadline, "Dovecot is not listening on {port}: {}", self.log());
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The doveadm HTTP API's URL.
    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}/doveadm/v1", self.api)
    }

    /// Write the API key to a 0600 file for the agent; returns its path.
    pub fn api_key_file(&self) -> PathBuf {
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.path().join("doveadm-api.key");
        let mut f =
            std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&path).expect("key");
        f.write_all(self.api_key.as_bytes()).expect("write key");
        path
    }

    /// The agent's `[mail]` section for this Dovecot (API on loopback, its
    /// key in a 0600 file).
    pub fn agent_config(&self) -> picket_agent::mail::MailConfig {
        let mut config = picket_agent::mail::MailConfig::new(&self.api_url(), &self.api_key_file());
        config.dovecot_config = self.conf.clone();
        config
    }

    /// Put a global Sieve script that runs before every user's.
    pub fn sieve_before(&self, name: &str, script: &str) {
        std::fs::write(self.path().join("sieve-before").join(format!("{name}.sieve")), script).expect("script");
        let ok = Command::new("chown").args(["-R", "dovecot:dovecot"]).arg(self.path().join("sieve-before")).status();
        assert!(ok.expect("chown").success());
    }

    /// Wrap links at delivery as OPERATIONS.md says: `picket-linkwrap`
    /// among the filter programs, a global Sieve script before the user's
    /// calling it with the link key file `key` and the recipient.
    pub fn wrap_links(&self, linkwrap: &Path, key: &Path) {
        std::os::unix::fs::symlink(linkwrap, self.path().join("sieve-filters/picket-linkwrap")).expect("symlink");
        let script = format!(
            "require [\"vnd.dovecot.filter\", \"envelope\", \"variables\"];\n\
             if envelope :matches \"to\" \"*\" {{ set \"rcpt\" \"${{1}}\"; }}\n\
             filter \"picket-linkwrap\" [\"--key\", \"{}\", \"--to\", \"${{rcpt}}\"];\n",
            key.display()
        );
        std::fs::write(self.path().join("sieve-before/50-picket-linkwrap.sieve"), script).expect("script");
        let ok = Command::new("chown").args(["-R", "dovecot:dovecot"]).arg(self.path().join("sieve-before")).status();
        assert!(ok.expect("chown").success());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path().join("log/dovecot.log")).unwrap_or_default()
    }

    /// Stop it (and wait until its ports are closed).
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        let _ = Command::new("/usr/sbin/dovecot")
            .arg("-c")
            .arg(&self.conf)
            .arg("stop")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.api)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.running = false;
    }

    /// Start it again after [`Dovecot::stop`].
    pub fn restart(&mut self) {
        self.run();
    }

    /// Deliver `message` to `recipients` over LMTP, as an MTA would.
    pub fn deliver(&self, from: &str, recipients: &[String], message: &[u8]) {
        let sent = lmtp(SocketAddr::from(([127, 0, 0, 1], self.lmtp)), from, recipients, message)
            .unwrap_or_else(|e| panic!("LMTP: {e}"));
        for (r, got) in recipients.iter().zip(&sent.rcpt) {
            assert!(got.starts_with("250"), "LMTP recipient {r}: {got}");
        }
        for (r, got) in recipients.iter().zip(&sent.data) {
            assert!(got.starts_with("250"), "LMTP delivery to {r}: {got}");
        }
    }

    /// An IMAP session as `user`.
    pub fn imap(&self, user: &str) -> Imap {
        Imap::login(SocketAddr::from(([127, 0, 0, 1], self.imap)), user, PASSWORD).expect("IMAP login")
    }

    /// Try to log in over IMAP as `user` with `password`: the server's
    /// refusal, if it refuses.
    pub fn imap_login(&self, user: &str, password: &str) -> Result<Imap, String> {
        Imap::login(SocketAddr::from(([127, 0, 0, 1], self.imap)), user, password)
    }

    /// `doveadm fetch` as the administrator would run it on the host, e.g.
    /// to look into the quarantine account no user reaches.
    pub fn doveadm_fetch(&self, user: &str, fields: &str, query: &[&str]) -> String {
        let out = Command::new("/usr/bin/doveadm")
            .arg("-c")
            .arg(&self.conf)
            .args(["-f", "flow", "fetch", "-u", user, fields])
            .args(query)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("doveadm fetch");
        assert!(out.status.success(), "doveadm fetch: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Put `script` as `user`'s Sieve script `name` over ManageSieve, as
    /// the user's mail client would, and make it the active one.
    pub fn sieve_put(&self, user: &str, name: &str, script: &str) {
        use base64::Engine as _;
        let stream = TcpStream::connect(("127.0.0.1", self.managesieve)).expect("ManageSieve");
        stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut w = stream;
        let done = |reader: &mut BufReader<TcpStream>| -> String {
            let mut all = String::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).expect("ManageSieve reply");
                all.push_str(&line);
                if line.starts_with("OK") || line.starts_with("NO") || line.starts_with("BYE") || line.is_empty() {
                    assert!(line.starts_with("OK"), "ManageSieve: {all}");
                    return all;
                }
            }
        };
        done(&mut reader);
        let plain = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{PASSWORD}"));
        w.write_all(format!("AUTHENTICATE \"PLAIN\" \"{plain}\"\r\n").as_bytes()).expect("write");
        done(&mut reader);
        w.write_all(format!("PUTSCRIPT \"{name}\" {{{}+}}\r\n{script}\r\n", script.len()).as_bytes()).expect("write");
        done(&mut reader);
        w.write_all(format!("SETACTIVE \"{name}\"\r\nLOGOUT\r\n").as_bytes()).expect("write");
        done(&mut reader);
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Ports {
    imap: u16,
    lmtp: u16,
    api: u16,
    managesieve: u16,
    smtp: u16,
}

fn config(d: &Path, ports: &Ports, key: &str) -> String {
    let d = d.display();
    let Ports { imap, lmtp, api, managesieve, smtp } = ports;
    format!(
        r#"base_dir = {d}/run
log_path = {d}/log/dovecot.log
protocols = imap lmtp sieve
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
mail_location = maildir:{d}/mail/%u
default_internal_user = dovecot
default_login_user = dovenull
default_internal_group = dovecot
first_valid_uid = 100
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {d}/users
  default_fields = uid=dovecot gid=dovecot home={d}/mail/%u
}}
namespace inbox {{
  inbox = yes
  mailbox Junk {{
    special_use = \Junk
    auto = subscribe
  }}
  mailbox Trash {{
    special_use = \Trash
    auto = subscribe
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap}
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp}
  }}
}}
service managesieve-login {{
  inet_listener sieve {{
    address = 127.0.0.1
    port = {managesieve}
  }}
}}
protocol lmtp {{
  mail_plugins = $mail_plugins sieve
}}
plugin {{
  sieve = file:~/sieve;active=~/.dovecot.sieve
  # Global scripts run before the user's (empty until a test adds one:
  # link wrapping); the filter programs they may call.
  sieve_before = {d}/sieve-before
  sieve_plugins = sieve_extprograms
  sieve_global_extensions = +vnd.dovecot.filter
  sieve_filter_bin_dir = {d}/sieve-filters
}}
submission_host = 127.0.0.1:{smtp}
doveadm_api_key = {key}
service doveadm {{
  inet_listener http {{
    address = 127.0.0.1
    port = {api}
  }}
}}
"#
    )
}

/// A minimal IMAP client: enough to see a mailbox as its user does.
pub struct Imap {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    tag: u32,
}

impl Imap {
    fn login(addr: SocketAddr, user: &str, password: &str) -> Result<Self, String> {
        let stream = TcpStream::connect(addr).expect("IMAP");
        stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        let mut me = Self { reader: BufReader::new(stream.try_clone().expect("clone")), writer: stream, tag: 0 };
        let mut greeting = String::new();
        me.reader.read_line(&mut greeting).expect("greeting");
        assert!(greeting.starts_with("* OK"), "IMAP greeting: {greeting}");
        me.command(&format!("LOGIN \"{user}\" \"{password}\""))?;
        Ok(me)
    }

    /// The whole message `uid` of the examined mailbox as the server
    /// sends it (`BODY.PEEK[]`: header and body, every byte).
    pub fn raw(&mut self, uid: u32) -> String {
        let lines = self.command(&format!("UID FETCH {uid} BODY.PEEK[]")).expect("FETCH");
        let line = lines.iter().find(|l| l.contains("BODY[]")).expect("a BODY[] line");
        line[line.find("BODY[]").expect("BODY[]")..].to_string()
    }

    /// Run one command; its untagged lines (literals inlined), or the
    /// server's NO/BAD line.
    pub fn command(&mut self, command: &str) -> Result<Vec<String>, String> {
        self.tag += 1;
        let tag = format!("t{}", self.tag);
        self.writer.write_all(format!("{tag} {command}\r\n").as_bytes()).expect("IMAP write");
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).expect("IMAP read");
            assert!(!line.is_empty(), "IMAP connection closed during {command}");
            // A literal: {n}\r\n then n bytes, then the rest of the line.
            while let Some(n) = literal_len(&line) {
                let mut bytes = vec![0; n];
                self.reader.read_exact(&mut bytes).expect("IMAP literal");
                line.push_str(&String::from_utf8_lossy(&bytes));
                let mut rest = String::new();
                self.reader.read_line(&mut rest).expect("IMAP read");
                line.push_str(&rest);
            }
            if let Some(status) = line.strip_prefix(&format!("{tag} ")) {
                return if status.starts_with("OK") { Ok(lines) } else { Err(status.trim().to_string()) };
            }
            lines.push(line.trim_end().to_string());
        }
    }

    /// UIDs in `mailbox` whose Message-ID is `id`.
    pub fn find(&mut self, mailbox: &str, message_id: &str) -> Vec<u32> {
        self.command(&format!("EXAMINE \"{mailbox}\"")).expect("EXAMINE");
        let lines = self.command(&format!("UID SEARCH HEADER Message-ID \"{message_id}\"")).expect("SEARCH");
        lines
            .iter()
            .filter_map(|l| l.strip_prefix("* SEARCH"))
            .flat_map(|l| l.split_whitespace().filter_map(|n| n.parse().ok()).collect::<Vec<u32>>())
            .collect()
    }

    /// The flags and internal date of message `uid` in the examined mailbox.
    pub fn flags_and_date(&mut self, uid: u32) -> (Vec<String>, String) {
        let lines = self.command(&format!("UID FETCH {uid} (FLAGS INTERNALDATE)")).expect("FETCH");
        let line = lines.iter().find(|l| l.contains("FETCH")).expect("a FETCH line").clone();
        let flags = between(&line, "FLAGS (", ")").split_whitespace().map(str::to_string).collect();
        let date = between(&line, "INTERNALDATE \"", "\"").to_string();
        (flags, date)
    }

    /// The subscribed folders (what a mail client shows by default).
    pub fn subscribed(&mut self) -> Vec<String> {
        let lines = self.command("LSUB \"\" \"*\"").expect("LSUB");
        lines.iter().filter_map(|l| l.rsplit(' ').next()).map(|m| m.trim_matches('"').to_string()).collect()
    }
}

fn literal_len(line: &str) -> Option<usize> {
    let body = line.trim_end_matches(['\r', '\n']);
    let open = body.rfind('{')?;
    body.strip_suffix('}')?[open + 1..].parse().ok()
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> &'a str {
    let Some(from) = s.find(start).map(|i| i + start.len()) else { return "" };
    s[from..].find(end).map(|to| &s[from..from + to]).unwrap_or_default()
}

/// A mail server as the next hop: accepts every message over SMTP and
/// keeps (recipients, message) for the test to look at.
pub struct Smtp {
    pub port: u16,
    received: std::sync::Arc<Received>,
}

impl Smtp {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("SMTP listener");
        let port = listener.local_addr().expect("addr").port();
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let kept = kept.clone();
                std::thread::spawn(move || smtp_session(stream, &kept));
            }
        });
        Self { port, received }
    }

    /// What arrived so far.
    pub fn received(&self) -> Vec<(Vec<String>, String)> {
        self.received.lock().expect("lock").clone()
    }

    /// Wait up to `wait` for `n` messages in all.
    pub fn wait_for(&self, n: usize, wait: Duration) -> Vec<(Vec<String>, String)> {
        let deadline = Instant::now() + wait;
        while self.received().len() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.received()
    }
}

type Received = std::sync::Mutex<Vec<(Vec<String>, String)>>;

/// One SMTP session: each message it carries goes into `kept` as soon as
/// it is accepted.
fn smtp_session(stream: TcpStream, kept: &Received) -> Option<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut w = stream;
    let mut say = |line: &str| w.write_all(format!("{line}\r\n").as_bytes()).ok();
    say("220 picket-tests ESMTP")?;
    let mut rcpts = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return Some(());
        }
        let upper = line.trim_end().to_ascii_uppercase();
        if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            say("250 picket-tests")?;
        } else if upper.starts_with("RCPT TO:") {
            rcpts.push(line.trim_end()[8..].trim().trim_matches(['<', '>']).to_string());
            say("250 OK")?;
        } else if upper == "DATA" {
            say("354 go on")?;
            let mut data = String::new();
            loop {
                let mut l = String::new();
                if reader.read_line(&mut l).ok()? == 0 {
                    return Some(());
                }
                if l.trim_end() == "." {
                    break;
                }
                data.push_str(l.strip_prefix('.').unwrap_or(&l));
            }
            kept.lock().ok()?.push((std::mem::take(&mut rcpts), data));
            say("250 kept")?;
        } else if upper == "QUIT" {
            say("221 bye")?;
            return Some(());
        } else {
            say("250 OK")?;
        }
    }
}

/// What an LMTP server answered a delivery: its reply to each RCPT, then
/// to the message for each recipient it took.
#[derive(Debug)]
pub struct Lmtp {
    pub rcpt: Vec<String>,
    pub data: Vec<String>,
}

/// Deliver `message` to `recipients` over LMTP at `addr`, as an MTA would;
/// `Err` with the reply when the greeting, LHLO, MAIL or DATA is refused.
pub fn lmtp(addr: SocketAddr, from: &str, recipients: &[String], message: &[u8]) -> Result<Lmtp, String> {
    let stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut w = stream;
    let reply = |reader: &mut BufReader<TcpStream>| -> Result<String, String> {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).map_err(|e| format!("reply: {e}"))?;
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return Ok(all);
            }
        }
    };
    let expect = |reply: String, code: &str| if reply.starts_with(code) { Ok(()) } else { Err(reply) };
    let say = |w: &mut TcpStream, line: &str| w.write_all(format!("{line}\r\n").as_bytes()).map_err(|e| e.to_string());
    expect(reply(&mut reader)?, "220")?;
    say(&mut w, "LHLO picket-tests")?;
    expect(reply(&mut reader)?, "250")?;
    say(&mut w, &format!("MAIL FROM:<{from}>"))?;
    expect(reply(&mut reader)?, "250")?;
    let mut rcpt = Vec::new();
    for r in recipients {
        say(&mut w, &format!("RCPT TO:<{r}>"))?;
        rcpt.push(reply(&mut reader)?);
    }
    let taken = rcpt.iter().filter(|r| r.starts_with("250")).count();
    say(&mut w, "DATA")?;
    let go = reply(&mut reader)?;
    if taken == 0 {
        return Ok(Lmtp { rcpt, data: vec![go] });
    }
    expect(go, "354")?;
    let mut data = Vec::with_capacity(message.len() + 64);
    for line in message.split_inclusive(|&b| b == b'\n') {
        if line.first() == Some(&b'.') {
            data.push(b'.');
        }
        data.extend_from_slice(line);
    }
    if !data.ends_with(b"\n") {
        data.extend_from_slice(b"\r\n");
    }
    data.extend_from_slice(b".\r\n");
    w.write_all(&data).map_err(|e| format!("data: {e}"))?;
    let data = (0..taken).map(|_| reply(&mut reader)).collect::<Result<Vec<_>, _>>()?;
    let _ = say(&mut w, "QUIT");
    Ok(Lmtp { rcpt, data })
}

/// `picket-linkwrap lmtp` (the binary `linkwrap`) in front of `mail`'s
/// LMTP on a free loopback port, signing with the key file `key`; its
/// stderr in `log`, or nowhere. Killed when dropped.
pub struct LinkProxy {
    pub child: std::process::Child,
    pub addr: SocketAddr,
}

impl LinkProxy {
    pub fn start(linkwrap: &Path, mail: &Dovecot, key: &Path, log: Option<&Path>) -> Self {
        let port = TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("addr").port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stderr = match log {
            Some(path) => std::process::Stdio::from(std::fs::File::create(path).expect("log")),
            None => std::process::Stdio::null(),
        };
        let child = Command::new(linkwrap)
            .args(["lmtp", "--listen", &addr.to_string(), "--upstream", &format!("127.0.0.1:{}", mail.lmtp)])
            .arg("--key")
            .arg(key)
            .stderr(stderr)
            .spawn()
            .expect("picket-linkwrap lmtp");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "the proxy never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
        LinkProxy { child, addr }
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
