//! Link wrapping at delivery (time-of-click protection; feature `mail`): the links in a
//! message's text parts (plain and HTML) are rewritten to the click
//! listener's signed form ([`crate::links`]). Only the bodies of
//! those parts change; headers, other parts and boundaries keep every byte.
//!
//! Left untouched, and said why: signed or encrypted messages (S/MIME,
//! PGP/MIME, inline PGP), whose signature a rewrite would break; messages
//! without links; messages that are not MIME. Attached messages
//! (`message/rfc822`) are files, like other attachments: their links are
//! not rewritten.

use mail_parser::decoders::{base64::base64_decode, quoted_printable::quoted_printable_decode};
use mail_parser::{Encoding, MessageParser, MimeHeaders, PartType};

/// Largest message read (Dovecot's own default limit for a delivered
/// message is far below this).
pub const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// What wrapping did to a message.
#[derive(Debug, PartialEq, Eq)]
pub enum Wrapped {
    /// The message with `links` links rewritten.
    Changed { message: Vec<u8>, links: usize },
    /// The message stays byte for byte as it was, because of this.
    Unchanged(String),
}

/// `raw` parsed by mail-parser, or `None` when it is not a message — or
/// when the parser panics on it (its debug assertions do on some broken
/// nesting): outside input never takes the process down.
pub fn parse_mime(raw: &[u8]) -> Option<mail_parser::Message<'_>> {
    std::panic::catch_unwind(|| MessageParser::default().parse(raw)).ok().flatten()
}

/// Content types whose presence means the message is signed or encrypted.
const SIGNED_TYPES: [&str; 7] = [
    "multipart/signed",
    "multipart/encrypted",
    "application/pkcs7-mime",
    "application/x-pkcs7-mime",
    "application/pkcs7-signature",
    "application/x-pkcs7-signature",
    "application/pgp-encrypted",
];

/// Rewrite each `http(s)://` link of `raw`'s text parts to
/// `wrap(message_id, link)` (`None`: leave that link as it is). The
/// Message-ID is the header's, without angle brackets ("" when none).
pub fn wrap_links(raw: &[u8], wrap: &mut dyn FnMut(&str, &str) -> Option<String>) -> Wrapped {
    if raw.len() > MAX_MESSAGE {
        return Wrapped::Unchanged(format!("larger than {} MiB", MAX_MESSAGE >> 20));
    }
    let Some(message) = parse_mime(raw) else {
        return Wrapped::Unchanged("malformed MIME: not a message".into());
    };
    for part in &message.parts {
        if let Some(ct) = part.content_type() {
            let full = format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or_default()).to_ascii_lowercase();
            if SIGNED_TYPES.contains(&full.as_str()) {
                return Wrapped::Unchanged(format!("signed or encrypted ({full})"));
            }
        }
    }
    let message_id = message.message_id().unwrap_or_default();
    let mut wrap = |link: &str| wrap(message_id, link);
    // Each text part's body: where it is, and its decoded bytes.
    let mut edits: Vec<(std::ops::Range<usize>, Vec<u8>)> = Vec::new();
    let mut links = 0;
    for part in &message.parts {
        let html = match part.body {
            PartType::Text(_) => false,
            PartType::Html(_) => true,
            _ => continue,
        };
        if part.content_disposition().is_some_and(|d| d.is_attachment()) {
            continue;
        }
        let (start, end) = (part.offset_body as usize, part.offset_end as usize);
        let Some(body) = raw.get(start..end) else { continue };
        // The line break before a boundary belongs to the boundary.
        let content_len = body.len() - body.iter().rev().take_while(|b| matches!(b, b'\r' | b'\n')).count();
        let (content, tail) = body.split_at(content_len);
        let decoded = match part.encoding {
            Encoding::None => content.to_vec(),
            Encoding::QuotedPrintable => match quoted_printable_decode(content) {
                Some(d) => d,
                None => continue,
            },
            Encoding::Base64 => match base64_decode(content) {
                Some(d) => d,
                None => continue,
            },
        };
        if has_inline_pgp(&decoded) {
            return Wrapped::Unchanged("signed or encrypted (inline PGP)".into());
        }
        let Some((rewritten, n)) = rewrite_text(&decoded, html, &mut wrap) else { continue };
        let eol: &[u8] =
            if content.windows(2).any(|w| w == b"\r\n") || tail.starts_with(b"\r") { b"\r\n" } else { b"\n" };
        let mut new_body = match part.encoding {
            Encoding::None => rewritten,
            Encoding::QuotedPrintable => qp_encode(&rewritten, eol),
            Encoding::Base64 => base64_lines(&rewritten, eol),
        };
        new_body.extend_from_slice(tail);
        edits.push((start..end, new_body));
        links += n;
    }
    if edits.is_empty() {
        return Wrapped::Unchanged("no links".into());
    }
    edits.sort_by_key(|(r, _)| r.start);
    let mut out = Vec::with_capacity(raw.len() + links * 200);
    let mut at = 0;
    for (range, body) in edits {
        if range.start < at {
            continue; // parts never overlap; a broken parser answer never duplicates bytes
        }
        out.extend_from_slice(&raw[at..range.start]);
        out.extend_from_slice(&body);
        at = range.end;
    }
    out.extend_from_slice(&raw[at..]);
    Wrapped::Changed { message: out, links }
}

fn has_inline_pgp(text: &[u8]) -> bool {
    let mut rest = text;
    while let Some(at) = rest.iter().position(|&b| b == b'-') {
        let here = &rest[at..];
        if here.starts_with(b"-----BEGIN PGP SIGNED MESSAGE-----") || here.starts_with(b"-----BEGIN PGP MESSAGE-----") {
            return true;
        }
        rest = &here[1..];
    }
    false
}

/// Bytes that end a link in text (as the search reads links), by byte
/// value: read for every byte of every link.
const LINK_END: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        table[i] = b.is_ascii_whitespace()
            || b < 0x20
            || b == 0x7f
            || matches!(
                b,
                b'"' | b'\'' | b'<' | b'>' | b'`' | b'(' | b')' | b'{' | b'}' | b'[' | b']' | b'|' | b'\\' | b'^'
            );
        i += 1;
    }
    table
};

fn ends_link(b: u8) -> bool {
    LINK_END[usize::from(b)]
}

fn starts_web(rest: &[u8]) -> bool {
    let scheme = |s: &[u8]| rest.get(..s.len()).is_some_and(|h| h.eq_ignore_ascii_case(s));
    scheme(b"http://") || scheme(b"https://")
}

/// `text` with each link replaced by `wrap(link)`, and how many were; `None`
/// when none was.
fn rewrite_text(text: &[u8], html: bool, wrap: &mut dyn FnMut(&str) -> Option<String>) -> Option<(Vec<u8>, usize)> {
    let mut out = Vec::with_capacity(text.len());
    let (mut at, mut i, mut n) = (0, 0, 0);
    while i < text.len() {
        if !(text[i] | 0x20 == b'h' && starts_web(&text[i..])) {
            i += 1;
            continue;
        }
        let mut end = i + text[i..].iter().position(|&b| ends_link(b)).unwrap_or(text.len() - i);
        while end > i && b".,;:!?".contains(&text[end - 1]) {
            end -= 1;
        }
        let found = std::str::from_utf8(&text[i..end]).ok();
        // In HTML the link is written with entities: `&amp;` is `&`.
        let original = found.map(|l| if html { l.replace("&amp;", "&") } else { l.to_string() });
        if let Some(wrapped) = original.and_then(|l| wrap(&l)) {
            out.extend_from_slice(&text[at..i]);
            out.extend_from_slice(wrapped.as_bytes());
            at = end;
            n += 1;
        }
        i = end.max(i + 1);
    }
    if n == 0 {
        return None;
    }
    out.extend_from_slice(&text[at..]);
    Some((out, n))
}

/// Quoted-printable (RFC 2045 6.7), lines at most 76 characters, line
/// breaks of the text kept as `eol`.
fn qp_encode(text: &[u8], eol: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() * 11 / 10);
    let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
    for (k, line) in lines.iter().enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut width = 0;
        for (j, &b) in line.iter().enumerate() {
            let last = j + 1 == line.len();
            let literal = (b == b' ' || b == b'\t') && !last || (33..=126).contains(&b) && b != b'=';
            let piece_len = if literal { 1 } else { 3 };
            if width + piece_len > 75 {
                out.push(b'=');
                out.extend_from_slice(eol);
                width = 0;
            }
            if literal {
                out.push(b);
            } else {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.extend_from_slice(&[b'=', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
            }
            width += piece_len;
        }
        if k + 1 < lines.len() {
            out.extend_from_slice(eol);
        }
    }
    out
}

/// Base64 in lines of 76 characters.
fn base64_lines(data: &[u8], eol: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let flat = base64::engine::general_purpose::STANDARD.encode(data);
    let mut out = Vec::with_capacity(flat.len() + flat.len() / 76 * eol.len() + eol.len());
    for (k, chunk) in flat.as_bytes().chunks(76).enumerate() {
        if k > 0 {
            out.extend_from_slice(eol);
        }
        out.extend_from_slice(chunk);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrapper(seen: &mut Vec<String>) -> impl FnMut(&str, &str) -> Option<String> + '_ {
        move |_: &str, link: &str| {
            seen.push(link.to_string());
            Some(format!("https://click.test/w/{}", seen.len()))
        }
    }

    fn changed(w: Wrapped) -> (String, usize) {
        match w {
            Wrapped::Changed { message, links } => (String::from_utf8(message).expect("utf-8"), links),
            Wrapped::Unchanged(why) => panic!("unchanged: {why}"),
        }
    }

    #[test]
    fn plain_and_html_links_are_wrapped_and_nothing_else_changes() {
        let raw = "From: a@x.example\r\nSubject: s\r\nMIME-Version: 1.0\r\n\
            Content-Type: multipart/alternative; boundary=\"b\"\r\n\r\n--b\r\n\
            Content-Type: text/plain; charset=utf-8\r\n\r\nGo to https://evil.example/a?x=1&y=2. Now!\r\n--b\r\n\
            Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
            <a href=3D\"http://evil.example/b?x=3D1&amp;y=3D2\">here</a>\r\n--b--\r\n";
        let mut seen = Vec::new();
        let (out, n) = changed(wrap_links(raw.as_bytes(), &mut wrapper(&mut seen)));
        assert_eq!(n, 2);
        assert_eq!(seen, ["https://evil.example/a?x=1&y=2", "http://evil.example/b?x=1&y=2"]);
        let expected = raw
            .replace("https://evil.example/a?x=1&y=2", "https://click.test/w/1")
            .replace("http://evil.example/b?x=3D1&amp;y=3D2", "https://click.test/w/2");
        assert_eq!(out, expected);
    }

    #[test]
    fn base64_text_is_decoded_rewritten_and_encoded_again() {
        use base64::Engine;
        let body = base64::engine::general_purpose::STANDARD.encode("see http://evil.example/c\r\n");
        let raw = format!(
            "From: a@x.example\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n{body}\r\n"
        );
        let mut seen = Vec::new();
        let (out, _) = changed(wrap_links(raw.as_bytes(), &mut wrapper(&mut seen)));
        let parsed = MessageParser::default().parse(out.as_bytes()).expect("parses");
        assert_eq!(parsed.body_text(0).as_deref(), Some("see https://click.test/w/1\r\n"));
        assert!(out
            .starts_with("From: a@x.example\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"));
    }

    #[test]
    fn quoted_printable_round_trips_long_lines_and_odd_bytes() {
        let text = format!("caf\u{e9} = {} http://evil.example/{} \t\r\nend", "x".repeat(100), "y".repeat(90));
        let encoded = qp_encode(text.as_bytes(), b"\r\n");
        assert!(encoded.split(|&b| b == b'\n').all(|l| l.len() <= 77), "{}", String::from_utf8_lossy(&encoded));
        assert_eq!(quoted_printable_decode(&encoded).expect("decodes"), text.as_bytes());
    }

    #[test]
    fn signed_messages_and_messages_without_links_stay_byte_identical() {
        let mut wrap = |_: &str, _: &str| Some("https://click.test/x".to_string());
        let smime = "From: a@x.example\r\nMIME-Version: 1.0\r\nContent-Type: multipart/signed; \
            protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=\"s\"\r\n\r\n--s\r\n\
            Content-Type: text/plain\r\n\r\nhttp://evil.example/\r\n--s\r\n\
            Content-Type: application/pkcs7-signature\r\n\r\nAAAA\r\n--s--\r\n";
        assert!(
            matches!(wrap_links(smime.as_bytes(), &mut wrap), Wrapped::Unchanged(why) if why.contains("multipart/signed"))
        );
        let pgp = "From: a@x.example\r\n\r\n-----BEGIN PGP SIGNED MESSAGE-----\r\nHash: SHA256\r\n\r\nhttp://evil.example/\r\n";
        assert!(matches!(wrap_links(pgp.as_bytes(), &mut wrap), Wrapped::Unchanged(why) if why.contains("PGP")));
        let plain = "From: a@x.example\r\n\r\nno links here\r\n";
        assert_eq!(wrap_links(plain.as_bytes(), &mut wrap), Wrapped::Unchanged("no links".into()));
    }

    #[test]
    fn a_link_the_wrapper_declines_is_left_and_attachments_are_not_touched() {
        let raw = "From: a@x.example\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"m\"\r\n\r\n\
            --m\r\nContent-Type: text/plain\r\n\r\nhttps://click.test/l/v1/already http://evil.example/\r\n--m\r\n\
            Content-Type: text/plain; name=\"notes.txt\"\r\nContent-Disposition: attachment; filename=\"notes.txt\"\r\n\r\n\
            http://evil.example/in-attachment\r\n--m--\r\n";
        let mut wrap =
            |_: &str, l: &str| (!l.starts_with("https://click.test/")).then(|| "https://click.test/new".to_string());
        let (out, n) = changed(wrap_links(raw.as_bytes(), &mut wrap));
        assert_eq!(n, 1);
        assert_eq!(out, raw.replacen("http://evil.example/\r\n", "https://click.test/new\r\n", 1));
    }

    #[test]
    fn a_message_the_parser_chokes_on_is_left_as_it_is() {
        // Found by the fuzzer: a message/rfc822 part with no boundary of its
        // own inside a multipart (mail-parser asserts in debug builds).
        let raw: &[u8] = b"From: a@x.exaelpm\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"m\"\r\n\r\n--m\r\nContent-Type: text/plain\r\n\r\nhttp://evil.example/\r\n--m\r\nContent-Type: message/rfc822\nFrom: b@y\r\n\r\nhttp://inneion: 1.0\r\nContent-Type: multipar.example/\r\n--m\r\nCom\r\nContent-Type: message/rfc822\r\n\r\nFrom: b@y\r\n\r\nt.examcple/\r\n--m--\r\n";
        let mut wrap = |_: &str, _: &str| Some("https://c/x".to_string());
        let out = wrap_links(raw, &mut wrap);
        if cfg!(debug_assertions) {
            assert_eq!(out, Wrapped::Unchanged("malformed MIME: not a message".into()));
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut wrap = |_: &str, _: &str| Some("https://c/x".to_string());
        for raw in
            [&b""[..], b"\xff\xfe", b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!http://x"]
        {
            let _ = wrap_links(raw, &mut wrap);
        }
    }
}
