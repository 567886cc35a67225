//! A stored message's attachments, and the same message with some of them
//! replaced by a short note: every other byte (headers, other parts,
//! boundaries) stays as it was. The MIME structure and each part's byte
//! offsets come from `mail-parser`; nothing here decodes more than the
//! attachments it hashes.

use std::ops::Range;

use mail_parser::MimeHeaders;
use sha2::{Digest, Sha256};

/// Largest message the agent parses.
pub use picket_common::link_rewrite::MAX_MESSAGE;

/// One attachment of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// Its file name ("" when it has none).
    pub name: String,
    /// SHA-256 of its decoded content.
    pub sha256: String,
    /// Its decoded size in bytes.
    pub size: u64,
    /// Where the part (its headers and body) is in the message.
    range: Range<usize>,
}

/// The attachments of `raw`: parts that say they are attachments or carry
/// a file name. A message that is not MIME, or whose attachment is
/// broken, is refused (and left untouched by the caller).
pub fn attachments(raw: &[u8]) -> Result<Vec<Attachment>, String> {
    attachments_of(raw, &parse(raw)?, true)
}

/// A message's attachments and the links in its text, as a search sees
/// them: a broken attachment is left out rather than failing the rest.
pub fn content(raw: &[u8]) -> Result<(Vec<Attachment>, Vec<String>), String> {
    let message = parse(raw)?;
    Ok((attachments_of(raw, &message, false)?, links_of(&message)))
}

fn parse(raw: &[u8]) -> Result<mail_parser::Message<'_>, String> {
    if raw.len() > MAX_MESSAGE {
        return Err(format!("the message is larger than {} MiB", MAX_MESSAGE >> 20));
    }
    picket_common::link_rewrite::parse_mime(raw).ok_or_else(|| "malformed MIME: not a message".to_string())
}

/// Call `f(name, decoded content)` for each attachment of `raw` (those a
/// search would list; broken ones left out); the message's links.
pub fn each_attachment(raw: &[u8], mut f: impl FnMut(&str, &[u8])) -> Result<Vec<String>, String> {
    let message = parse(raw)?;
    for part in message.attachments() {
        let named = part.attachment_name();
        if !part.content_disposition().is_some_and(|d| d.is_attachment()) && named.is_none() {
            continue;
        }
        if !part.is_encoding_problem {
            f(named.unwrap_or_default(), part.contents());
        }
    }
    Ok(links_of(&message))
}

/// Most links reported of one message, and their longest.
const MAX_LINKS: usize = 100;
const MAX_LINK: usize = 2048;

/// The `http://` and `https://` links in the message's text parts (plain
/// and HTML, decoded), in order, each once; after a link wrapped at
/// delivery, the original it leads to.
fn links_of(message: &mail_parser::Message<'_>) -> Vec<String> {
    let mut links: Vec<String> = Vec::new();
    for part in message.parts.iter().filter(|p| p.is_text()) {
        let Some(text) = part.text_contents() else { continue };
        let lower = text.to_ascii_lowercase();
        let mut from = 0;
        while let Some(at) = lower[from..].find("http").map(|i| from + i) {
            from = at + 4;
            let rest = &lower[at..];
            if !(rest.starts_with("http://") || rest.starts_with("https://")) {
                continue;
            }
            let end = text[at..]
                .find(|c: char| c.is_whitespace() || c.is_control() || "\"'<>`(){}[]|\\^".contains(c))
                .map_or(text.len(), |e| at + e);
            let link = text[at..end].trim_end_matches(['.', ',', ';', ':', '!', '?']).replace("&amp;", "&");
            from = end.max(from);
            if link.len() <= "https://".len() || link.len() > MAX_LINK {
                continue;
            }
            let original = picket_common::links::unwrapped(&link);
            for l in std::iter::once(link).chain(original) {
                if !links.contains(&l) {
                    links.push(l);
                    if links.len() == MAX_LINKS {
                        return links;
                    }
                }
            }
        }
    }
    links
}

pub use picket_common::links::host;

/// Whether `link` is the link `wanted` names (`http…`: the same link, its
/// scheme and host in any case) or is on the domain `wanted` names (or a
/// subdomain of it).
pub fn link_matches(link: &str, wanted: &str) -> bool {
    let lower = wanted.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        let split = |l: &str| {
            let (scheme, rest) = l.split_once("://").unwrap_or(("", l));
            let cut = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            (scheme.to_ascii_lowercase(), rest[..cut].to_ascii_lowercase(), rest[cut..].to_string())
        };
        split(link) == split(wanted)
    } else {
        let h = host(link);
        h == lower || h.ends_with(&format!(".{lower}"))
    }
}

/// `strict`: refuse what cannot be cut out cleanly (for a rewrite);
/// otherwise skip it (for a search).
fn attachments_of(raw: &[u8], message: &mail_parser::Message<'_>, strict: bool) -> Result<Vec<Attachment>, String> {
    let mut found = Vec::new();
    for part in message.attachments() {
        let disposition = part.content_disposition().is_some_and(|d| d.is_attachment());
        let name = part.attachment_name();
        if !disposition && name.is_none() {
            continue;
        }
        let range = part.offset_header as usize..part.offset_end as usize;
        let problem = if range.start == 0 {
            Some("the whole message is the attachment: quarantine the message instead".to_string())
        } else if range.start >= range.end || range.end > raw.len() {
            Some("malformed MIME: an attachment's bounds are not in the message".to_string())
        } else if part.is_encoding_problem {
            Some(format!("malformed MIME: attachment {:?} is not validly encoded", name.unwrap_or("")))
        } else {
            None
        };
        match problem {
            Some(why) if strict => return Err(why),
            Some(_) if part.is_encoding_problem => continue,
            _ => {}
        }
        let content = part.contents();
        found.push(Attachment {
            name: name.unwrap_or_default().to_string(),
            sha256: hex::encode(Sha256::digest(content)),
            size: content.len() as u64,
            range,
        });
    }
    Ok(found)
}

/// `raw` with each of `cut` replaced by a plain-text part holding
/// `note(attachment)`; every other byte as it was.
pub fn without(raw: &[u8], cut: &[&Attachment], note: impl Fn(&Attachment) -> String) -> Vec<u8> {
    let mut cut: Vec<&&Attachment> = cut.iter().collect();
    cut.sort_by_key(|a| a.range.start);
    let eol: &[u8] = if raw.windows(2).any(|w| w == b"\r\n") { b"\r\n" } else { b"\n" };
    let mut out = Vec::with_capacity(raw.len());
    let mut at = 0;
    for a in cut {
        if a.range.start < at {
            continue; // inside one already replaced
        }
        out.extend_from_slice(&raw[at..a.range.start]);
        let text = ascii(&note(a));
        for line in [
            "Content-Type: text/plain; charset=us-ascii",
            "Content-Disposition: inline",
            "Content-Transfer-Encoding: 7bit",
            "",
        ] {
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(eol);
        }
        for (i, line) in text.lines().enumerate() {
            if i > 0 {
                out.extend_from_slice(eol);
            }
            // `--` could read as a boundary and close the multipart early
            // (parsers differ on where they look for one): text from the
            // message, such as a file name, must never shape it.
            let mut safe = String::with_capacity(line.len());
            for c in line.chars() {
                if c == '-' && safe.ends_with('-') {
                    safe.push(' ');
                }
                safe.push(c);
            }
            out.extend_from_slice(safe.as_bytes());
        }
        at = a.range.end;
        // The line break before the next boundary belongs to the boundary;
        // if the part's range held it, the note ends with one too.
        if raw[..at].ends_with(eol) {
            out.extend_from_slice(eol);
        }
    }
    out.extend_from_slice(&raw[at..]);
    out
}

/// `text` as 7-bit printable ASCII (other characters as `\u{…}`), lines
/// at most 900 characters.
fn ascii(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut escaped: String = line
            .chars()
            .map(|c| if c == ' ' || c.is_ascii_graphic() { c.to_string() } else { c.escape_unicode().to_string() })
            .collect();
        escaped.truncate(900);
        out.push_str(&escaped);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &str = "From: a@x.example\r\nTo: b@example.org\r\nSubject: slip\r\nMessage-ID: <m@x>\r\n\
        MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
        preamble\r\n--b1\r\nContent-Type: text/plain\r\n\r\nSee the attached slip.\r\n\
        --b1\r\nContent-Type: application/octet-stream; name=\"slip.exe\"\r\n\
        Content-Disposition: attachment; filename=\"slip.exe\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
        TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAAAA\r\n\
        --b1\r\nContent-Type: text/plain; name=\"notes.txt\"\r\nContent-Disposition: attachment; filename=\"notes.txt\"\r\n\r\n\
        just notes\r\n--b1--\r\nepilogue\r\n";

    #[test]
    fn an_attachment_is_replaced_by_a_note_and_nothing_else_changes() {
        let raw = MESSAGE.as_bytes();
        let found = attachments(raw).expect("attachments");
        let names: Vec<&str> = found.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["slip.exe", "notes.txt"]);
        assert_eq!(found[0].sha256.len(), 64);
        let rewritten = without(raw, &[&found[0]], |a| format!("{} was quarantined: malware", a.name));
        let text = String::from_utf8(rewritten.clone()).expect("text");
        assert!(!text.contains("TVqQ"), "{text}");
        assert!(text.contains("\r\n\r\nslip.exe was quarantined: malware\r\n--b1\r\n"), "{text}");
        // Everything before and after the attachment part is byte for byte the same.
        let start = found[0].range.start;
        assert_eq!(&rewritten[..start], &raw[..start]);
        let tail = &raw[found[0].range.end..];
        assert!(rewritten.ends_with(tail));
        // The result is still the same MIME structure: the other attachment
        // is there, the slip is not.
        let again = attachments(&rewritten).expect("parses");
        assert_eq!(again.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(), ["notes.txt"]);
        assert_eq!(again[0].sha256, found[1].sha256);
        let message = mail_parser::MessageParser::default().parse(&rewritten).expect("message");
        assert_eq!(message.subject(), Some("slip"));
        assert_eq!(message.body_text(0).as_deref().map(str::trim), Some("See the attached slip."));
    }

    #[test]
    fn a_link_wrapped_at_delivery_counts_as_the_original_too() {
        let original = "https://pay.evil.example/login?a=1";
        let link = picket_common::links::Link {
            url: original.into(),
            device: uuid::Uuid::from_u128(1),
            recipient: "alice".into(),
            message_id: "m@x".into(),
        };
        let wrapped = picket_common::links::wrap("https://click.example:7444", &[7; 32], &link).expect("wraps");
        let m = format!("From: a@x\r\nSubject: s\r\n\r\nGo to {wrapped} now.\r\n");
        let (_, links) = content(m.as_bytes()).expect("content");
        assert_eq!(links, [wrapped.as_str(), original]);
        assert!(links.iter().any(|l| link_matches(l, "evil.example")));
    }

    #[test]
    fn links_come_from_plain_and_html_text_and_match_by_link_or_domain() {
        let m = "From: a@x\r\nSubject: s\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n\
            --b\r\nContent-Type: text/plain\r\n\r\nGo to https://Pay.Evil.example/login?a=1&b=2, now.\r\n\
            --b\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
            <a href=3D\"https://pay.evil.example/login?a=3D1&amp;b=3D2\">x</a> <a href=3D'http://ok.example'>y</a>\r\n--b--\r\n";
        let (attachments, links) = content(m.as_bytes()).expect("content");
        assert!(attachments.is_empty());
        assert_eq!(
            links,
            ["https://Pay.Evil.example/login?a=1&b=2", "https://pay.evil.example/login?a=1&b=2", "http://ok.example"]
        );
        assert!(link_matches(&links[0], "https://pay.evil.example/login?a=1&b=2"));
        assert!(!link_matches(&links[0], "https://pay.evil.example/login?a=1"));
        assert!(link_matches(&links[0], "evil.example") && link_matches(&links[0], "pay.evil.example"));
        assert!(!link_matches(&links[0], "vil.example") && !link_matches(&links[2], "evil.example"));
        assert_eq!(host("http://u:p@Host.Example:8080/x"), "host.example");
    }

    #[test]
    fn a_note_cannot_close_the_multipart() {
        let raw = MESSAGE.as_bytes();
        let found = attachments(raw).expect("attachments");
        let rewritten = without(raw, &[&found[0]], |_| "evil\n---b1--\nafter".to_string());
        let again = attachments(&rewritten).expect("parses");
        assert_eq!(again.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(), ["notes.txt"], "the part after survives");
    }

    #[test]
    fn malformed_mime_is_reported_never_a_panic() {
        assert!(attachments(b"").is_err() || attachments(b"").expect("empty").is_empty());
        let single = "Content-Type: application/pdf; name=\"x.pdf\"\r\nContent-Disposition: attachment\r\n\r\nabc\r\n";
        assert!(attachments(single.as_bytes()).expect_err("whole").contains("whole message"));
        let cut_short = &MESSAGE.as_bytes()[..MESSAGE.len() / 2];
        let _ = attachments(cut_short);
        for n in 0..MESSAGE.len() {
            let _ = attachments(&MESSAGE.as_bytes()[..n]);
        }
        let mut garbage = MESSAGE.as_bytes().to_vec();
        garbage.iter_mut().step_by(7).for_each(|b| *b = 0xff);
        let _ = attachments(&garbage);
    }
}
