//! A real browser for the console tests: Debian's Chromium, headless,
//! driven by its chromedriver through the W3C WebDriver protocol (JSON
//! over HTTP on loopback; <https://www.w3.org/TR/webdriver2/>). The
//! protocol is a handful of calls, spoken here with the `ureq` client
//! the tests already use rather than a WebDriver crate and its HTTP stack.
//!
//! Chromium accepts the coordinator's certificate because the session asks
//! for `acceptInsecureCerts`: the coordinator's own CA is not in the
//! browser's trust store, and adding it would mean writing to the host's
//! NSS database. The page is still HTTPS (secure context, `Secure` and
//! `__Host-` cookies), which is what the console relies on.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The key W3C WebDriver uses for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: ureq::Agent,
    _profile: tempfile::TempDir,
}

/// An element on the current page.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Browser {
    /// Starts chromedriver on a free loopback port and opens a headless
    /// Chromium session with a fresh profile. Fails (never skips) when
    /// they are not installed: `.ci/run` installs Debian's `chromium` and
    /// `chromium-driver`.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// As [`Browser::start`], with chromedriver (and so Chromium) started
    /// through `launcher` (for example `ip netns exec NAME`). The calling
    /// thread must be able to reach it: call from a thread in the same
    /// network namespace, and use the browser only from such threads.
    pub fn start_with(launcher: &[String]) -> Self {
        let chromedriver = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("chromedriver not found: install Debian's chromium and chromium-driver (.ci/run does)");
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let mut command = match launcher.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(chromedriver);
                c
            }
            None => Command::new(chromedriver),
        };
        let driver = command
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let http: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let base = format!("http://127.0.0.1:{port}");
        let ready = Instant::now() + Duration::from_secs(20);
        loop {
            let status = http
                .get(&format!("{base}/status"))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_json::<Value>().ok().filter(|v| v["value"]["ready"] == true));
            if status.is_some() {
                break;
            }
            assert!(Instant::now() < ready, "chromedriver did not become ready on port {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let binary = ["/usr/bin/chromium", "/usr/lib/chromium/chromium"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("chromium not found: install Debian's chromium (.ci/run does)");
        let capabilities = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "acceptInsecureCerts": true,
                "goog:chromeOptions": {
                    "binary": binary,
                    // No sandbox: the tests run as root, where Chromium's
                    // sandbox refuses to start.
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                             "--window-size=1280,900", "--no-first-run", "--disable-extensions",
                             format!("--user-data-dir={}", profile.path().display())]
                }
            }}
        });
        let mut browser = Self { driver, base, session: String::new(), http, _profile: profile };
        let created = browser.call("POST", "/session", Some(capabilities)).expect("new WebDriver session");
        browser.session = created["sessionId"].as_str().expect("sessionId").to_string();
        browser
    }

    /// One WebDriver command; its `value`, or the driver's error.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let response = match method {
            "GET" => self.http.get(&url).call(),
            "DELETE" => self.http.delete(&url).call(),
            _ => self.http.post(&url).send_json(body.unwrap_or_else(|| json!({}))),
        };
        let mut response = response.map_err(|e| format!("{method} {path}: {e}"))?;
        let status = response.status().as_u16();
        let reply: Value = response.body_mut().read_json().map_err(|e| format!("{method} {path}: {e}"))?;
        let value = reply.get("value").cloned().unwrap_or(Value::Null);
        if status >= 400 {
            return Err(format!("{method} {path}: {} {}", value["error"], value["message"]));
        }
        Ok(value)
    }

    fn session_call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    pub fn goto(&self, url: &str) {
        self.session_call("POST", "/url", Some(json!({ "url": url }))).expect("navigate");
    }

    pub fn url(&self) -> String {
        self.session_call("GET", "/url", None).expect("url").as_str().unwrap_or_default().to_string()
    }

    pub fn title(&self) -> String {
        self.session_call("GET", "/title", None).expect("title").as_str().unwrap_or_default().to_string()
    }

    /// Every element matching the CSS selector, in document order.
    pub fn find_all(&self, css: &str) -> Vec<Element> {
        let found = self
            .session_call("POST", "/elements", Some(json!({ "using": "css selector", "value": css })))
            .expect("find elements");
        found
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e[ELEMENT].as_str())
            .map(|id| Element(id.into()))
            .collect()
    }

    /// The first element matching `css`, waiting up to `secs` for it.
    pub fn wait_for(&self, css: &str, secs: u64) -> Element {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(e) = self.find_all(css).into_iter().next() {
                return e;
            }
            assert!(Instant::now() < deadline, "no {css:?} after {secs} s on {}", self.url());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits up to `secs` for the URL to leave `from` (after a click that
    /// navigates), and returns the new one.
    pub fn wait_to_leave(&self, from: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let url = self.url();
            if url != from && self.execute("return document.readyState;") == json!("complete") {
                return url;
            }
            assert!(Instant::now() < deadline, "still on {from} after {secs} s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn find(&self, css: &str) -> Element {
        self.wait_for(css, 5)
    }

    pub fn click(&self, e: &Element) {
        self.session_call("POST", &format!("/element/{}/click", e.0), None).expect("click");
    }

    /// Empties an input (a file input forgets its files).
    pub fn clear(&self, e: &Element) {
        self.session_call("POST", &format!("/element/{}/clear", e.0), None).expect("clear");
    }

    /// Types `text` into the element, as keystrokes.
    pub fn type_into(&self, e: &Element, text: &str) {
        self.session_call("POST", &format!("/element/{}/value", e.0), Some(json!({ "text": text }))).expect("type");
    }

    /// The element's rendered text.
    pub fn text(&self, e: &Element) -> String {
        self.session_call("GET", &format!("/element/{}/text", e.0), None)
            .expect("text")
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Runs `script` in the page (the console's CSP governs the page's
    /// own scripts, not WebDriver's); its return value.
    pub fn execute(&self, script: &str) -> Value {
        self.session_call("POST", "/execute/sync", Some(json!({ "script": script, "args": [] }))).expect("execute")
    }

    /// The text of an open `alert()`, if one is open.
    pub fn alert_text(&self) -> Option<String> {
        self.session_call("GET", "/alert/text", None).ok().and_then(|v| v.as_str().map(String::from))
    }

    /// Resizes the window (CSS pixels, outer size).
    pub fn resize(&self, width: u32, height: u32) {
        self.session_call("POST", "/window/rect", Some(json!({ "width": width, "height": height }))).expect("resize");
    }

    /// Saves a PNG of the window.
    pub fn screenshot(&self, path: &Path) {
        use base64::Engine as _;
        let png = self.session_call("GET", "/screenshot", None).expect("screenshot");
        let bytes =
            base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap_or_default()).expect("base64 PNG");
        std::fs::write(path, bytes).expect("write screenshot");
    }

    /// Signs in through the form, as a person does.
    pub fn sign_in(&self, base: &str, user: &str, password: &str) {
        self.goto(&format!("{base}/login"));
        let name = self.find("#username");
        self.type_into(&name, user);
        self.type_into(&self.find("#password"), password);
        self.click(&self.find("section.signin button[type=submit]"));
        self.wait_for("form.signout", 10);
    }

    pub fn sign_out(&self) {
        self.click(&self.find("form.signout button[type=submit]"));
        self.wait_for("#username", 10);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
