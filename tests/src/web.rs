//! The console as a browser speaks to it, without the browser: HTTPS
//! trusting the coordinator's CA, redirects shown rather than followed,
//! cookies passed by hand, sign-in through the real form.

/// The session cookie's name.
pub const SESSION: &str = "__Host-picket_session";
/// The sign-in form's double-submit cookie.
pub const LOGIN: &str = "__Host-picket_login";

pub struct Web {
    base: String,
    agent: ureq::Agent,
}

/// One answer: status, headers, body.
pub struct Page {
    pub status: u16,
    pub headers: ureq::http::HeaderMap,
    pub body: String,
}

impl Page {
    pub fn header(&self, name: &str) -> String {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
    }

    /// Every `Set-Cookie` line.
    pub fn cookies(&self) -> Vec<String> {
        self.headers.get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).map(str::to_string).collect()
    }

    /// The value this answer sets cookie `name` to.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies().iter().find_map(|c| {
            c.split(';').next().and_then(|kv| kv.split_once('=')).filter(|(k, _)| *k == name).map(|(_, v)| v.into())
        })
    }

    /// `<meta name="csrf-token" content="…">`
    pub fn csrf(&self) -> String {
        let marker = "name=\"csrf-token\" content=\"";
        let at = self.body.find(marker).expect("csrf meta") + marker.len();
        self.body[at..].split('"').next().unwrap_or_default().to_string()
    }
}

fn read(mut res: ureq::http::Response<ureq::Body>) -> Page {
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.body_mut().read_to_string().unwrap_or_default();
    Page { status, headers, body }
}

impl Web {
    /// A browser-like client of the console at `base` (`https://…`).
    pub fn new(base: &str, tls: ureq::tls::TlsConfig) -> Self {
        let agent = ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).tls_config(tls).build();
        Self { base: base.trim_end_matches('/').to_string(), agent: agent.into() }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn get(&self, path: &str, cookie: &str) -> Page {
        let mut req = self.agent.get(&self.url(path));
        if !cookie.is_empty() {
            req = req.header("Cookie", cookie);
        }
        read(req.call().expect("GET"))
    }

    pub fn post_form(&self, path: &str, cookie: &str, form: &[(&str, &str)]) -> Page {
        self.post_form_with(path, cookie, &[], form)
    }

    /// A form POST with extra request headers.
    pub fn post_form_with(&self, path: &str, cookie: &str, headers: &[(&str, &str)], form: &[(&str, &str)]) -> Page {
        let mut req = self.agent.post(&self.url(path));
        if !cookie.is_empty() {
            req = req.header("Cookie", cookie);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        read(req.send_form(form.iter().copied()).expect("POST"))
    }

    /// A JSON POST with extra request headers (what the console's script sends).
    pub fn post_json(&self, path: &str, cookie: &str, headers: &[(&str, &str)], body: &serde_json::Value) -> Page {
        let mut req = self.agent.post(&self.url(path)).header("Cookie", cookie);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        read(req.send_json(body).expect("POST"))
    }

    /// Signs in through the form as a browser does: GET the form (its
    /// cookie and token), then POST it.
    pub fn sign_in(&self, user: &str, password: &str) -> Page {
        let form = self.get("/login", "");
        let token = form.cookie(LOGIN).expect("login cookie");
        self.post_form(
            "/login",
            &format!("{LOGIN}={token}"),
            &[("username", user), ("password", password), ("csrf_token", &token)],
        )
    }

    /// A live session: its `Cookie` header value and its CSRF token.
    pub fn session(&self, user: &str, password: &str) -> (String, String) {
        let done = self.sign_in(user, password);
        assert_eq!(done.status, 303, "sign-in as {user}: {}", done.body);
        let cookie = format!("{SESSION}={}", done.cookie(SESSION).expect("session cookie"));
        let home = self.get("/", &cookie);
        assert_eq!(home.status, 200, "{}", home.body);
        (cookie, home.csrf())
    }
}
