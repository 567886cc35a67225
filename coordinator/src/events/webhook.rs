//! Webhook sink: `POST` the event JSON to a URL; any 2xx is a delivery.

use std::time::Duration;

use serde_json::Value;

use super::sink::Sink;

pub struct Webhook {
    name: String,
    url: String,
    agent: ureq::Agent,
}

impl Webhook {
    pub fn new(url: &str) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        Self { name: format!("webhook:{url}"), url: url.to_string(), agent }
    }
}

impl Sink for Webhook {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver(&self, event: &Value) -> Result<(), String> {
        let res = self
            .agent
            .post(&self.url)
            .header("User-Agent", concat!("picket-coordinator/", env!("CARGO_PKG_VERSION")))
            .send_json(event)
            .map_err(|e| e.to_string())?;
        let status = res.status().as_u16();
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(format!("receiver answered {status}"))
        }
    }
}
