//! Syslog sink: RFC 5424 messages over UDP (one datagram each) or TCP
//! (octet-counted framing, RFC 6587), facility local0. Action transitions
//! are informational (warning when they failed, timed out or expired);
//! alerts are error (malicious), warning (suspicious) or informational.

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::sink::Sink;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
}

pub struct Syslog {
    name: String,
    address: String,
    transport: Transport,
    hostname: String,
    tcp: Mutex<Option<TcpStream>>,
}

const FACILITY_LOCAL0: u8 = 16;

impl Syslog {
    pub fn new(address: &str, transport: Transport) -> Self {
        let hostname =
            std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
        Self {
            name: format!("syslog:{}:{address}", if transport == Transport::Udp { "udp" } else { "tcp" }),
            address: address.to_string(),
            transport,
            hostname: if hostname.is_empty() { "-".into() } else { hostname },
            tcp: Mutex::new(None),
        }
    }

    /// One RFC 5424 line: `<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG`.
    /// MSGID is `action` or `alert`; MSG is the event's JSON.
    pub fn format(&self, event: &Value) -> String {
        let at = event["at"].as_str().unwrap_or("-");
        let kind = event["type"].as_str().unwrap_or("");
        let (severity, msgid, sd) = if kind.starts_with("alert.") {
            let alert = &event["alert"];
            let severity = match alert["severity"].as_str() {
                Some("malicious") => 3,
                Some("suspicious") => 4,
                _ => 6,
            };
            let sd = format!(
                "[picket@32473 alert_id=\"{}\" event=\"{}\" severity=\"{}\" rule=\"{}\" device=\"{}\" sha256=\"{}\"]",
                escape(event["alert_id"].as_str().unwrap_or("")),
                escape(kind),
                escape(alert["severity"].as_str().unwrap_or("")),
                escape(alert["rule"].as_str().unwrap_or("")),
                escape(alert["device_id"].as_str().unwrap_or("")),
                escape(alert["sha256"].as_str().unwrap_or(""))
            );
            (severity, "alert", sd)
        } else {
            let to = event["to"].as_str().unwrap_or("");
            // warning for outcomes a person should look at, else informational
            let severity = if matches!(to, "failed" | "timed_out" | "expired") { 4 } else { 6 };
            let sd = format!(
                "[picket@32473 action_id=\"{}\" to=\"{}\" kind=\"{}\"]",
                escape(event["action_id"].as_str().unwrap_or("")),
                escape(to),
                escape(event["action"]["kind"].as_str().unwrap_or(""))
            );
            (severity, "action", sd)
        };
        let pri = FACILITY_LOCAL0 * 8 + severity;
        format!("<{pri}>1 {at} {} picket-coordinator {} {msgid} {sd} {event}", self.hostname, std::process::id())
    }
}

/// SD-PARAM value escaping (RFC 5424 §6.3.3).
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace(']', "\\]")
}

impl Sink for Syslog {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver(&self, event: &Value) -> Result<(), String> {
        let line = self.format(event);
        match self.transport {
            Transport::Udp => {
                let socket = UdpSocket::bind(if self.address.starts_with('[') { "[::]:0" } else { "0.0.0.0:0" })
                    .map_err(|e| e.to_string())?;
                socket.send_to(line.as_bytes(), &self.address).map_err(|e| e.to_string())?;
                Ok(())
            }
            Transport::Tcp => {
                let mut guard = self.tcp.lock().unwrap_or_else(|p| p.into_inner());
                if guard.is_none() {
                    let stream = TcpStream::connect(&self.address).map_err(|e| e.to_string())?;
                    stream.set_write_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
                    *guard = Some(stream);
                }
                let framed = format!("{} {line}", line.len());
                let result = guard.as_mut().map(|s| s.write_all(framed.as_bytes()).and_then(|_| s.flush()));
                match result {
                    Some(Ok(())) => Ok(()),
                    Some(Err(e)) => {
                        *guard = None; // reconnect next time
                        Err(e.to_string())
                    }
                    None => Err("no connection".into()),
                }
            }
        }
    }
}
