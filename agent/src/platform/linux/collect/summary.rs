//! `summary.html`: the highlights first, then what was and was not collected.

use std::fmt::Write as _;

use super::{Highlights, Item, NotCollected};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

pub(super) fn summary_html(h: &Highlights, items: &[Item], not: &[NotCollected]) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Picket investigation package: {host}</title>\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 6px;text-align:left}}.warn{{color:#a00}}</style>\
         </head><body><h1>Investigation package: {host}</h1><p>Generated {at}.</p><h2>Highlights</h2><ul>",
        host = esc(&crate::sysinfo::hostname()),
        at = esc(&crate::clock::now_rfc3339())
    );
    let mut line = |warn: bool, text: String| {
        let _ = write!(out, "<li{}>{}</li>", if warn { " class=\"warn\"" } else { "" }, text);
    };
    line(
        !h.suspicious_processes.is_empty(),
        format!("{} processes run a deleted executable or one in a temp directory", h.suspicious_processes.len()),
    );
    for p in &h.suspicious_processes {
        line(
            true,
            esc(&format!(
                "pid {} {} {}",
                p["pid"],
                p["executable"].as_str().unwrap_or(""),
                p["user"].as_str().unwrap_or("")
            )),
        );
    }
    line(!h.uid0_accounts.is_empty(), format!("uid-0 accounts besides root: {}", esc(&h.uid0_accounts.join(", "))));
    line(!h.ld_so_preload.is_empty(), format!("/etc/ld.so.preload entries: {}", esc(&h.ld_so_preload.join(", "))));
    line(
        !h.recent_persistence.is_empty(),
        format!("persistence changed in the last 7 days: {}", esc(&h.recent_persistence.join(", "))),
    );
    line(false, format!("{} listening sockets", h.listening.len()));
    for l in &h.listening {
        line(
            false,
            esc(&format!(
                "{} {} pid {}",
                l["protocol"].as_str().unwrap_or(""),
                l["local"].as_str().unwrap_or(""),
                l["pid"]
            )),
        );
    }
    out.push_str("</ul><h2>Items</h2><table><tr><th>item</th><th>source</th><th>status</th><th>size</th></tr>");
    for i in items {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&i.name),
            esc(&i.source),
            esc(&i.error.clone().unwrap_or_else(|| i.status.to_string())),
            i.size
        );
    }
    out.push_str("</table><h2>Not collected</h2><ul>");
    for n in not {
        let _ = write!(out, "<li>{}: {}</li>", esc(&n.place), esc(&n.why));
    }
    out.push_str("</ul></body></html>\n");
    out
}
