//! `picket-linkwrap lmtp`: an LMTP proxy (RFC 2033) in front of Dovecot's
//! LMTP that wraps each recipient's copy of a message on its way in, with
//! no process started per delivery.
//!
//! The MTA delivers to the proxy as it would to Dovecot. Per session the
//! proxy holds one connection to Dovecot, and MAIL and RCPT go through as
//! they come, so Dovecot answers for its own users (unknown, over quota) at
//! RCPT time. At DATA the proxy reads the whole message, then hands Dovecot
//! each recipient's copy, wrapped for that recipient (the recipient is in
//! each link's signed reference): in the same transaction when there is one
//! recipient or the message stays as it is, else one transaction per
//! recipient. Dovecot's answer for each recipient goes back to the MTA as
//! Dovecot gave it.
//!
//! Mail is never lost or held up by it: no key yet, a message it cannot
//! parse, a signed message → that message goes through unchanged (the
//! reason on stderr). When Dovecot cannot be reached, or the connection to
//! it breaks, the MTA gets a temporary failure (4xx) and keeps the message
//! to try again. A message over 64 MiB (advertised as SIZE) is refused with
//! 552, as Postfix would refuse it before.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use picket_common::link_rewrite::MAX_MESSAGE;

use picket_common::links::KeyFile;

use crate::wrap;

const USAGE: &str = "usage: picket-linkwrap lmtp --listen ADDRESS --upstream ADDRESS --key FILE [--max-connections N]
An LMTP proxy in front of Dovecot's LMTP that wraps the links of each
recipient's copy of a message (time-of-click protection). Point the MTA's
LMTP delivery at --listen instead of at Dovecot.
  --listen ADDRESS       where the MTA delivers: HOST:PORT or unix:PATH
  --upstream ADDRESS     Dovecot's LMTP: HOST:PORT or unix:PATH
  --key FILE             the link key file the agent writes ([mail] link_key_file)
  --max-connections N    sessions at once (default 100); more get 421";

/// The largest message taken (the rewrite's own limit), advertised as SIZE.
const MAX_SIZE: usize = MAX_MESSAGE;
/// A command line from the MTA, or a reply line from Dovecot.
const MAX_LINE: u64 = 4096;
/// A message line is read in pieces of at most this.
const MAX_PIECE: u64 = 64 * 1024;
const MAX_RECIPIENTS: usize = 1000;
/// RFC 5321 4.5.3.2: at least 5 minutes for a command, 10 for the end of DATA.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
const DATA_TIMEOUT: Duration = Duration::from_secs(600);
/// Connections to Dovecot kept for the next session (each holds one of
/// Dovecot's LMTP processes), and for how long.
const IDLE_UPSTREAMS: usize = 8;
const IDLE_FOR: Duration = Duration::from_secs(30);

struct Options {
    listen: Endpoint,
    upstream: Endpoint,
    key: String,
    max_connections: usize,
    hostname: String,
}

fn options(argv: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let (mut listen, mut upstream, mut key, mut max) = (None, None, None, None);
    let mut argv = argv;
    while let Some(flag) = argv.next() {
        let slot = match flag.as_str() {
            "--listen" => &mut listen,
            "--upstream" => &mut upstream,
            "--key" => &mut key,
            "--max-connections" => &mut max,
            "--help" | "-h" => {
                println!("{USAGE}");
                return Ok(None);
            }
            other => return Err(format!("unexpected argument {other:?}\n{USAGE}")),
        };
        let value = argv.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        if slot.replace(value).is_some() {
            return Err(format!("{flag} given twice"));
        }
    }
    let (Some(listen), Some(upstream), Some(key)) = (listen, upstream, key) else {
        return Err(format!("--listen, --upstream and --key are required\n{USAGE}"));
    };
    let max_connections = match max {
        None => 100,
        Some(n) => n.parse().ok().filter(|n| *n > 0).ok_or_else(|| format!("--max-connections {n}: not a count"))?,
    };
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or_else(|| "localhost".into());
    Ok(Some(Options {
        listen: Endpoint::parse(&listen),
        upstream: Endpoint::parse(&upstream),
        key,
        max_connections,
        hostname,
    }))
}

pub fn main(argv: impl Iterator<Item = String>) -> ExitCode {
    let opts = match options(argv) {
        Ok(Some(o)) => o,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("picket-linkwrap lmtp: {e}");
            return ExitCode::from(2);
        }
    };
    let listener = match opts.listen.bind() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("picket-linkwrap lmtp: cannot listen on {}: {e}", opts.listen);
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = wrap::read_key(&opts.key) {
        eprintln!("picket-linkwrap lmtp: {e}; mail goes through unchanged until the agent writes the key");
    }
    eprintln!("picket-linkwrap lmtp: listening on {}, delivering to {}", opts.listen, opts.upstream);
    let max_connections = opts.max_connections;
    let shared = Arc::new(Shared { opts, idle: Mutex::new(Vec::new()), key: Mutex::new(None) });
    let sessions = Arc::new(AtomicUsize::new(0));
    loop {
        let conn = match listener.accept() {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                eprintln!("picket-linkwrap lmtp: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if sessions.fetch_add(1, Ordering::AcqRel) >= max_connections {
            sessions.fetch_sub(1, Ordering::AcqRel);
            let mut conn = conn;
            let _ = conn.set_timeout(Duration::from_secs(5));
            let _ = conn.write_all(b"421 4.3.2 too many connections, try again later\r\n");
            continue;
        }
        let (shared, sessions) = (shared.clone(), sessions.clone());
        let spawned = std::thread::Builder::new().name("lmtp".into()).spawn(move || {
            if let Err(e) = Session::run(&shared, conn) {
                eprintln!("picket-linkwrap lmtp: session ended: {e}");
            }
            sessions.fetch_sub(1, Ordering::AcqRel);
        });
        if let Err(e) = spawned {
            eprintln!("picket-linkwrap lmtp: cannot start a session: {e}");
        }
    }
}

/// `HOST:PORT` or `unix:PATH`.
#[derive(Clone, Debug)]
enum Endpoint {
    Tcp(String),
    Unix(PathBuf),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp(a) => f.write_str(a),
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl Endpoint {
    fn parse(s: &str) -> Self {
        match s.strip_prefix("unix:") {
            Some(path) => Endpoint::Unix(path.into()),
            None => Endpoint::Tcp(s.into()),
        }
    }

    fn connect(&self) -> std::io::Result<Conn> {
        Ok(match self {
            Endpoint::Tcp(a) => {
                let s = TcpStream::connect(a)?;
                s.set_nodelay(true)?;
                Conn::Tcp(s)
            }
            Endpoint::Unix(p) => Conn::Unix(UnixStream::connect(p)?),
        })
    }

    /// Listen here. A socket file left by an earlier run is replaced;
    /// anything else at the path is an error. The socket is 0660: the
    /// MTA reaches it through the group.
    fn bind(&self) -> std::io::Result<Listener> {
        match self {
            Endpoint::Tcp(a) => Ok(Listener::Tcp(TcpListener::bind(a)?)),
            Endpoint::Unix(p) => {
                use std::os::unix::fs::{FileTypeExt, PermissionsExt};
                match std::fs::symlink_metadata(p) {
                    Ok(m) if m.file_type().is_socket() => std::fs::remove_file(p)?,
                    Ok(_) => return Err(std::io::Error::other("something other than a socket is there")),
                    Err(_) => {}
                }
                let l = UnixListener::bind(p)?;
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o660))?;
                Ok(Listener::Unix(l))
            }
        }
    }
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    fn accept(&self) -> std::io::Result<Conn> {
        Ok(match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept()?;
                s.set_nodelay(true)?;
                Conn::Tcp(s)
            }
            Listener::Unix(l) => Conn::Unix(l.accept()?.0),
        })
    }
}

enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Conn {
    fn try_clone(&self) -> std::io::Result<Conn> {
        Ok(match self {
            Conn::Tcp(s) => Conn::Tcp(s.try_clone()?),
            Conn::Unix(s) => Conn::Unix(s.try_clone()?),
        })
    }

    fn set_timeout(&self, d: Duration) -> std::io::Result<()> {
        match self {
            Conn::Tcp(s) => s.set_read_timeout(Some(d)).and_then(|()| s.set_write_timeout(Some(d))),
            Conn::Unix(s) => s.set_read_timeout(Some(d)).and_then(|()| s.set_write_timeout(Some(d))),
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.read(buf),
            Conn::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(buf),
            Conn::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Tcp(s) => s.flush(),
            Conn::Unix(s) => s.flush(),
        }
    }
}

/// One reply: its code and its lines as given (CRLF-terminated).
#[derive(Debug, Clone, PartialEq)]
struct Reply {
    code: u16,
    text: String,
}

impl Reply {
    fn new(code: u16, text: &str) -> Self {
        Reply { code, text: format!("{code} {text}\r\n") }
    }

    fn ok(&self) -> bool {
        (200..300).contains(&self.code)
    }
}

/// Read one line of at most `limit` bytes; `None` at the end of input.
fn read_line(r: &mut impl BufRead, limit: u64) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    r.take(limit).read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Ok(None);
    }
    if !line.ends_with(b"\n") {
        let what = if line.len() as u64 >= limit { "line too long" } else { "connection closed mid-line" };
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, what));
    }
    Ok(Some(line))
}

/// Read a (possibly multi-line) reply.
fn read_reply(r: &mut impl BufRead) -> std::io::Result<Reply> {
    let bad = |why: &str| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, format!("bad reply from the mail store: {why}"))
    };
    let mut text = String::new();
    for _ in 0..100 {
        let line = read_line(r, MAX_LINE)?.ok_or_else(|| bad("connection closed"))?;
        let line = String::from_utf8_lossy(&line);
        let line = line.trim_end_matches(['\r', '\n']);
        let code = line.get(..3).and_then(|c| c.parse::<u16>().ok()).ok_or_else(|| bad(line))?;
        text.push_str(line);
        text.push_str("\r\n");
        match line.as_bytes().get(3) {
            Some(b'-') => continue,
            None | Some(b' ') => return Ok(Reply { code, text }),
            Some(_) => return Err(bad(line)),
        }
    }
    Err(bad("more than 100 lines"))
}

/// `body` as DATA: lines ending in CRLF, a leading dot doubled, ended by
/// `.` on a line of its own.
fn stuffed(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 50 + 8);
    for line in body.split_inclusive(|&b| b == b'\n') {
        let ended = line.ends_with(b"\n");
        let mut content = line.strip_suffix(b"\n").unwrap_or(line);
        content = content.strip_suffix(b"\r").unwrap_or(content);
        if content.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(content);
        if ended || !content.is_empty() {
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// What follows `prefix` (any case) in `line`.
fn argument<'l>(line: &'l str, prefix: &str) -> Option<&'l str> {
    let (head, rest) = (line.get(..prefix.len())?, line.get(prefix.len()..)?);
    head.eq_ignore_ascii_case(prefix).then_some(rest)
}

/// A MAIL or RCPT command's path (`<addr>`) and parameters.
fn path_and_params(arg: &str) -> Option<(&str, Vec<&str>)> {
    let arg = arg.trim_start();
    let rest = arg.strip_prefix('<')?;
    let end = rest.find('>')?;
    Some((&rest[..end], rest[end + 1..].split_ascii_whitespace().collect()))
}

/// The extension a MAIL or RCPT parameter belongs to: it is passed on
/// only when Dovecot announced that extension.
fn extension_of(param: &str) -> Option<&'static str> {
    let key = param.split('=').next().unwrap_or(param).to_ascii_uppercase();
    Some(match key.as_str() {
        "BODY" => "8BITMIME",
        "SIZE" => "SIZE",
        "SMTPUTF8" => "SMTPUTF8",
        "RET" | "ENVID" | "NOTIFY" | "ORCPT" => "DSN",
        _ => return None,
    })
}

/// The connection to Dovecot's LMTP.
struct Upstream {
    r: BufReader<Conn>,
    w: Conn,
    extensions: Vec<String>,
    /// Taken from the idle ones: Dovecot may have closed it meanwhile.
    reused: bool,
}

impl Upstream {
    fn connect(to: &Endpoint, hostname: &str) -> std::io::Result<Self> {
        let conn = to.connect()?;
        conn.set_timeout(COMMAND_TIMEOUT)?;
        let mut up = Upstream { r: BufReader::new(conn.try_clone()?), w: conn, extensions: Vec::new(), reused: false };
        let greeting = read_reply(&mut up.r)?;
        if greeting.code != 220 {
            return Err(std::io::Error::other(format!("the mail store greets with {}", greeting.text.trim_end())));
        }
        let hello = up.command(&format!("LHLO {hostname}"))?;
        if !hello.ok() {
            return Err(std::io::Error::other(format!("the mail store answers LHLO with {}", hello.text.trim_end())));
        }
        up.extensions = hello
            .text
            .lines()
            .skip(1)
            .filter_map(|l| l.get(4..)?.split_ascii_whitespace().next().map(str::to_ascii_uppercase))
            .collect();
        Ok(up)
    }

    fn has(&self, extension: &str) -> bool {
        self.extensions.iter().any(|e| e == extension)
    }

    fn command(&mut self, line: &str) -> std::io::Result<Reply> {
        self.w.write_all(format!("{line}\r\n").as_bytes())?;
        read_reply(&mut self.r)
    }

    /// DATA with `body` for a transaction of `recipients`: one reply each.
    fn data(&mut self, body: &[u8], recipients: usize) -> std::io::Result<Vec<Reply>> {
        let go = self.command("DATA")?;
        if go.code != 354 {
            return Ok(vec![go; recipients]);
        }
        self.w.set_timeout(DATA_TIMEOUT)?;
        self.w.write_all(&stuffed(body))?;
        let replies = (0..recipients).map(|_| read_reply(&mut self.r)).collect();
        self.w.set_timeout(COMMAND_TIMEOUT)?;
        replies
    }
}

struct Recipient {
    address: String,
    /// The RCPT command as given to Dovecot.
    command: String,
}

/// What every session shares: the options, idle connections to Dovecot
/// and the link key as last read.
struct Shared {
    opts: Options,
    idle: Mutex<Vec<(Upstream, Instant)>>,
    key: Mutex<Option<(KeyStamp, KeyFile)>>,
}

/// What tells a changed key file: its inode, size and modification time.
type KeyStamp = (u64, u64, Option<SystemTime>);

impl Shared {
    /// A connection to Dovecot: an idle one, or a new one.
    fn upstream(&self) -> std::io::Result<Upstream> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        // Newest last; one idle too long is closed (dropped: no QUIT, so
        // no round trip under the lock).
        while let Some((mut up, since)) = idle.pop() {
            if since.elapsed() < IDLE_FOR {
                up.reused = true;
                return Ok(up);
            }
        }
        drop(idle);
        self.connect()
    }

    /// A new connection to Dovecot.
    fn connect(&self) -> std::io::Result<Upstream> {
        Upstream::connect(&self.opts.upstream, &self.opts.hostname)
    }

    /// Drop the idle connections.
    fn forget_idle(&self) {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Keep `up` (between transactions) for a later session.
    fn park(&self, mut up: Upstream) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < IDLE_UPSTREAMS {
            idle.push((up, Instant::now()));
        } else {
            drop(idle);
            let _ = up.command("QUIT");
        }
    }

    /// The link key, read again only when the file changed.
    fn key(&self) -> Result<KeyFile, String> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(&self.opts.key).map_err(|e| format!("{}: {e}", self.opts.key))?;
        let stamp = (meta.ino(), meta.len(), meta.modified().ok());
        let mut cached = self.key.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, key)) = cached.as_ref() {
            if *at == stamp {
                return Ok(key.clone());
            }
        }
        let key = wrap::read_key(&self.opts.key)?;
        *cached = Some((stamp, key.clone()));
        Ok(key)
    }
}

/// One MTA connection.
struct Session<'a> {
    shared: &'a Shared,
    client: BufReader<Conn>,
    out: Conn,
    upstream: Option<Upstream>,
    hello: bool,
    /// The MAIL command as given to Dovecot, once it took it.
    from: Option<String>,
    recipients: Vec<Recipient>,
}

fn unreachable(e: &std::io::Error) -> Reply {
    Reply::new(451, &format!("4.4.0 the mail store cannot be reached ({e}); try again later"))
}

impl<'a> Session<'a> {
    fn run(shared: &'a Shared, conn: Conn) -> std::io::Result<()> {
        conn.set_timeout(COMMAND_TIMEOUT)?;
        let mut s = Session {
            shared,
            client: BufReader::new(conn.try_clone()?),
            out: conn,
            upstream: None,
            hello: false,
            from: None,
            recipients: Vec::new(),
        };
        s.send(&Reply::new(220, &format!("{} LMTP Picket link wrapping ready", shared.opts.hostname)))?;
        let result = s.serve();
        if let Some(mut up) = s.upstream.take() {
            // Between transactions it is clean: the next session takes it.
            if s.from.is_none() {
                shared.park(up);
            } else {
                let _ = up.command("QUIT");
            }
        }
        result
    }

    fn send(&mut self, reply: &Reply) -> std::io::Result<()> {
        self.out.write_all(reply.text.as_bytes())
    }

    fn serve(&mut self) -> std::io::Result<()> {
        loop {
            let line = match read_line(&mut self.client, MAX_LINE) {
                Ok(Some(line)) => line,
                Ok(None) => return Ok(()),
                Err(e) => {
                    if e.kind() == std::io::ErrorKind::InvalidData {
                        let _ = self.send(&Reply::new(500, "5.5.2 line too long"));
                    }
                    return Err(e);
                }
            };
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\r', '\n']);
            let verb = line.split(' ').next().unwrap_or_default().to_ascii_uppercase();
            let reply = match verb.as_str() {
                "LHLO" => self.lhlo(),
                "MAIL" => self.mail(line),
                "RCPT" => self.rcpt(line),
                "DATA" => match self.data()? {
                    Some(replies) => {
                        for r in &replies {
                            self.send(r)?;
                        }
                        continue;
                    }
                    None => continue,
                },
                "RSET" => {
                    self.reset();
                    Reply::new(250, "2.0.0 OK")
                }
                "NOOP" => Reply::new(250, "2.0.0 OK"),
                "QUIT" => {
                    self.send(&Reply::new(221, "2.0.0 bye"))?;
                    return Ok(());
                }
                "HELO" | "EHLO" => Reply::new(500, "5.5.1 this is LMTP: use LHLO"),
                "VRFY" => Reply::new(252, "2.5.2 send some mail and see"),
                _ => Reply::new(502, "5.5.2 command not implemented"),
            };
            self.send(&reply)?;
        }
    }

    /// End the transaction here and at Dovecot.
    fn reset(&mut self) {
        self.from = None;
        self.recipients.clear();
        if let Some(up) = &mut self.upstream {
            if up.command("RSET").is_err() {
                self.upstream = None;
            }
        }
    }

    fn lhlo(&mut self) -> Reply {
        self.reset();
        if self.upstream.is_none() {
            match self.shared.upstream() {
                Ok(up) => self.upstream = Some(up),
                Err(e) => {
                    eprintln!("picket-linkwrap lmtp: {}: {e}", self.shared.opts.upstream);
                    return unreachable(&e);
                }
            }
        }
        self.hello = true;
        let mut lines = vec![self.shared.opts.hostname.clone(), "PIPELINING".into(), "ENHANCEDSTATUSCODES".into()];
        lines.push("8BITMIME".into());
        for passed in ["SMTPUTF8", "DSN"] {
            if self.upstream.as_ref().is_some_and(|u| u.has(passed)) {
                lines.push(passed.into());
            }
        }
        lines.push(format!("SIZE {MAX_SIZE}"));
        let last = lines.len() - 1;
        let text =
            lines.iter().enumerate().map(|(i, l)| format!("250{}{l}\r\n", if i == last { ' ' } else { '-' })).collect();
        Reply { code: 250, text }
    }

    /// The command for Dovecot: the path, and the parameters it knows.
    fn for_upstream(&self, verb: &str, path: &str, params: &[&str]) -> String {
        let mut line = format!("{verb}:<{path}>");
        for p in params {
            if extension_of(p).is_some_and(|ext| self.upstream.as_ref().is_some_and(|u| u.has(ext))) {
                line.push(' ');
                line.push_str(p);
            }
        }
        line
    }

    fn mail(&mut self, line: &str) -> Reply {
        if !self.hello {
            return Reply::new(503, "5.5.1 LHLO first");
        }
        if self.from.is_some() {
            return Reply::new(503, "5.5.1 a transaction is open already");
        }
        let Some((path, params)) = argument(line, "MAIL FROM:").and_then(path_and_params) else {
            return Reply::new(501, "5.5.4 syntax: MAIL FROM:<address>");
        };
        let size = params.iter().find_map(|p| p.split_once('=').filter(|(k, _)| k.eq_ignore_ascii_case("SIZE")));
        if let Some((_, n)) = size {
            if n.parse::<u64>().map_or(true, |n| n > MAX_SIZE as u64) {
                return Reply::new(552, &format!("5.3.4 message larger than {MAX_SIZE} bytes"));
            }
        }
        let command = self.for_upstream("MAIL FROM", path, &params);
        // The connection to Dovecot may have timed out while idle or while
        // the MTA's stayed open: one new try.
        for attempt in 0..2 {
            if self.upstream.is_none() {
                let up = if attempt == 0 { self.shared.upstream() } else { self.shared.connect() };
                match up {
                    Ok(up) => self.upstream = Some(up),
                    Err(e) => {
                        eprintln!("picket-linkwrap lmtp: {}: {e}", self.shared.opts.upstream);
                        return unreachable(&e);
                    }
                }
            }
            let up = self.upstream.as_mut().expect("connected above");
            match up.command(&command) {
                // Dovecot said goodbye to an idle connection (421): a new one.
                Ok(reply) if reply.code == 421 && up.reused && attempt == 0 => {
                    self.upstream = None;
                    self.shared.forget_idle();
                }
                Ok(reply) => {
                    if reply.ok() {
                        self.from = Some(command);
                    }
                    return reply;
                }
                Err(e) => {
                    // The idle ones went the same way (Dovecot restarted).
                    if up.reused {
                        self.shared.forget_idle();
                    }
                    self.upstream = None;
                    if attempt == 1 {
                        return unreachable(&e);
                    }
                }
            }
        }
        unreachable(&std::io::Error::other("no connection"))
    }

    fn rcpt(&mut self, line: &str) -> Reply {
        if self.from.is_none() {
            return Reply::new(503, "5.5.1 MAIL first");
        }
        if self.recipients.len() >= MAX_RECIPIENTS {
            return Reply::new(452, "4.5.3 too many recipients");
        }
        let Some((path, params)) = argument(line, "RCPT TO:").and_then(path_and_params) else {
            return Reply::new(501, "5.5.4 syntax: RCPT TO:<address>");
        };
        let command = self.for_upstream("RCPT TO", path, &params);
        let Some(up) = self.upstream.as_mut() else {
            return unreachable(&std::io::Error::other("no connection"));
        };
        match up.command(&command) {
            Ok(reply) => {
                if reply.ok() {
                    self.recipients.push(Recipient { address: path.to_string(), command });
                }
                reply
            }
            Err(e) => {
                // The transaction is gone with the connection.
                self.upstream = None;
                self.from = None;
                self.recipients.clear();
                unreachable(&e)
            }
        }
    }

    /// Read the message, deliver each recipient's copy: one reply per
    /// recipient, or `None` when the reply went out already (DATA refused).
    fn data(&mut self) -> std::io::Result<Option<Vec<Reply>>> {
        if self.from.is_none() {
            self.send(&Reply::new(503, "5.5.1 MAIL first"))?;
            return Ok(None);
        }
        if self.recipients.is_empty() {
            self.send(&Reply::new(503, "5.5.1 no valid recipients"))?;
            return Ok(None);
        }
        self.send(&Reply::new(354, "go ahead, end with <CRLF>.<CRLF>"))?;
        self.out.set_timeout(DATA_TIMEOUT)?;
        let body = read_message(&mut self.client)?;
        self.out.set_timeout(COMMAND_TIMEOUT)?;
        let n = self.recipients.len();
        let Some(body) = body else {
            self.reset();
            return Ok(Some(vec![Reply::new(552, &format!("5.3.4 message larger than {MAX_SIZE} bytes")); n]));
        };
        let replies = self.deliver(&body);
        self.from = None;
        self.recipients.clear();
        Ok(Some(replies))
    }

    /// Each recipient's copy to Dovecot; its reply for each.
    fn deliver(&mut self, body: &[u8]) -> Vec<Reply> {
        let copies = self.copies(body);
        let Some(up) = self.upstream.as_mut() else {
            return vec![unreachable(&std::io::Error::other("no connection")); self.recipients.len()];
        };
        let n = self.recipients.len();
        if n == 1 || copies.iter().all(Option::is_none) {
            // One transaction as the MTA opened it.
            let data = copies.into_iter().next().flatten();
            return match up.data(data.as_deref().unwrap_or(body), n) {
                Ok(replies) => replies,
                Err(e) => {
                    self.upstream = None;
                    vec![unreachable(&e); n]
                }
            };
        }
        // A copy per recipient: a transaction each.
        let from = self.from.clone().unwrap_or_default();
        let mut replies = Vec::with_capacity(n);
        let mut broken = None;
        let reset = up.command("RSET");
        if let Err(e) = reset {
            broken = Some(e);
        }
        for (r, copy) in self.recipients.iter().zip(copies) {
            if let Some(e) = &broken {
                replies.push(unreachable(e));
                continue;
            }
            let one = (|| -> std::io::Result<Reply> {
                let mail = up.command(&from)?;
                if !mail.ok() {
                    return Ok(mail);
                }
                let rcpt = up.command(&r.command)?;
                if !rcpt.ok() {
                    up.command("RSET")?;
                    return Ok(rcpt);
                }
                Ok(up.data(copy.as_deref().unwrap_or(body), 1)?.remove(0))
            })();
            match one {
                Ok(reply) => replies.push(reply),
                Err(e) => {
                    replies.push(unreachable(&e));
                    broken = Some(e);
                }
            }
        }
        if broken.is_some() {
            self.upstream = None;
        }
        replies
    }

    /// Each recipient's wrapped copy, `None` where the message goes as it
    /// came (whatever the reason, said on stderr).
    fn copies(&self, body: &[u8]) -> Vec<Option<Vec<u8>>> {
        let n = self.recipients.len();
        let key = match self.shared.key() {
            Ok(k) => k,
            Err(e) => {
                eprintln!("picket-linkwrap lmtp: {e}; links of a message to {n} recipient(s) are not wrapped");
                return vec![None; n];
            }
        };
        let mut copies = Vec::with_capacity(n);
        for (i, r) in self.recipients.iter().enumerate() {
            let (copy, why) = wrap::wrap_for(body, &key, &r.address);
            if let Some(why) = why {
                eprintln!("picket-linkwrap lmtp: message to {} left as it is: {why}", r.address);
            }
            if copy.is_none() && i == 0 {
                // Signed, no links, not a message: the same for everyone
                // (or a recipient no link can name: rare enough).
                return vec![None; n];
            }
            copies.push(copy);
        }
        copies
    }
}

/// The message after DATA, dot-unstuffed; `None` when it was larger than
/// [`MAX_SIZE`] (read to its end all the same).
fn read_message(r: &mut impl BufRead) -> std::io::Result<Option<Vec<u8>>> {
    let mut body = Vec::with_capacity(64 * 1024);
    let mut too_big = false;
    let mut line_start = true;
    let mut piece = Vec::with_capacity(1024);
    loop {
        piece.clear();
        r.take(MAX_PIECE).read_until(b'\n', &mut piece)?;
        if piece.is_empty() {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed in DATA"));
        }
        let mut data = &piece[..];
        if line_start {
            if data == b".\r\n" || data == b".\n" {
                break;
            }
            if data.first() == Some(&b'.') {
                data = &data[1..];
            }
        }
        line_start = piece.ends_with(b"\n");
        if !too_big {
            if body.len() + data.len() > MAX_SIZE {
                too_big = true;
                body = Vec::new();
            } else {
                body.extend_from_slice(data);
            }
        }
    }
    Ok((!too_big).then_some(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_stuffed_and_unstuffed_back_to_the_same_bytes() {
        let body = b"Subject: x\r\n\r\n.leading dot\r\n..two\r\n.\r\nlast line without end".to_vec();
        let wire = stuffed(&body);
        assert!(wire.ends_with(b"last line without end\r\n.\r\n"));
        assert!(wire.windows(16).any(|w| w == b"\r\n..leading dot\r"));
        let back = read_message(&mut &wire[..]).expect("read").expect("fits");
        assert_eq!(back, b"Subject: x\r\n\r\n.leading dot\r\n..two\r\n.\r\nlast line without end\r\n");
        // Bare LF becomes CRLF on the wire.
        assert_eq!(stuffed(b"a\nb\n"), b"a\r\nb\r\n.\r\n");
    }

    #[test]
    fn replies_are_read_whole_and_garbage_is_an_error() {
        let mut r = &b"250-host\r\n250-PIPELINING\r\n250 SIZE\r\n550 5.1.1 no\r\n"[..];
        let hello = read_reply(&mut r).expect("reply");
        assert_eq!((hello.code, hello.text.lines().count()), (250, 3));
        assert_eq!(read_reply(&mut r).expect("reply").code, 550);
        assert!(read_reply(&mut &b"hello\r\n"[..]).is_err());
        assert!(read_reply(&mut &b"250-unterminated\r\n"[..]).is_err());
        assert!(read_reply(&mut &b"2"[..]).is_err());
    }

    #[test]
    fn paths_and_parameters() {
        assert_eq!(path_and_params("<a@b> SIZE=10 BODY=8BITMIME"), Some(("a@b", vec!["SIZE=10", "BODY=8BITMIME"])));
        assert_eq!(path_and_params("<>"), Some(("", vec![])));
        assert_eq!(path_and_params(" a@b"), None);
        assert_eq!(extension_of("notify=never"), Some("DSN"));
        assert_eq!(extension_of("XFORWARD=1"), None);
    }
}
