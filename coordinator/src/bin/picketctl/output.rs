//! How picketctl prints: tables, objects, JSON; and the API helpers every
//! command shares (paging, path segments).

use picket_coordinator::client::{Client, ClientError};
use serde_json::Value;

pub fn print_action(a: &Value, json_out: bool) -> Result<(), ClientError> {
    if json_out {
        return print_json(a);
    }
    println!("{} {} on {}: {}", s(&a["id"]), s(&a["kind"]), s(&a["device_id"]), s(&a["status"]));
    Ok(())
}

/// Follow `next_cursor` until the list is complete.
pub fn all_pages(client: &Client, path: &str) -> Result<Vec<Value>, ClientError> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{path}?limit=1000&cursor={}", seg(c)),
            None => format!("{path}?limit=1000"),
        };
        let page = client.get(&url)?;
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return Ok(items),
        }
    }
}

/// Percent-encode a path segment or query value (ids are plain, but a typo
/// with `/` or `?` must not change the route).
pub fn seg(raw: &str) -> String {
    raw.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub fn print_json(v: &Value) -> Result<(), ClientError> {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    Ok(())
}

pub fn print_object(v: &Value) {
    if let Some(map) = v.as_object() {
        let width = map.keys().map(|k| k.len()).max().unwrap_or(0);
        for (k, val) in map {
            println!("{k:width$}  {}", s(val));
        }
    }
}

pub fn table(headers: &[&str], items: &[Value], row: impl Fn(&Value) -> Vec<String>) {
    let rows: Vec<Vec<String>> = items.iter().map(row).collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:w$}")).collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r);
    }
    if items.is_empty() {
        println!("(none)");
    }
}
