//! Reading users' Sieve scripts (RFC 5228) for mail forwarding: where a
//! script redirects mail, and the same script with its external redirects
//! taken out. A script is the user's own text, so nothing here trusts it:
//! a script this cannot read is reported as such and never rewritten.
//!
//! Only what forwarding needs is parsed: the tokens (so strings, comments
//! and multi-line text never pass for commands) and where each command
//! starts. A `redirect` is a command that starts at a statement position
//! (the script's start, or after `;`, `{` or `}`); its address is its one
//! string argument.

use std::ops::Range;

/// Longest script read (Dovecot's own default `sieve_max_script_size` is
/// 1 MiB).
pub const MAX_SCRIPT: usize = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Identifier(String),
    Tag(String),
    Number,
    String(String),
    Special(u8),
}

/// A `redirect` command in a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// Where it sends mail; `None` when it is only known at delivery (a
    /// variable, or an argument that is not one string).
    pub address: Option<String>,
    /// `:copy`: the user keeps the message as well.
    pub copy: bool,
    /// Where the command is in the script, from `redirect` to its `;`.
    span: Range<usize>,
}

/// The tokens of `script`, each with where it is.
fn tokens(script: &str) -> Result<Vec<(Token, Range<usize>)>, String> {
    if script.len() > MAX_SCRIPT {
        return Err(format!("the script is larger than {MAX_SCRIPT} bytes"));
    }
    let b = script.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        match b[i] {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'#' => i = line_end(b, i),
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let end = find(b, i + 2, b"*/").ok_or("a comment /* is never closed")?;
                i = end + 2;
            }
            b'"' => {
                let (text, end) = quoted(script, i)?;
                out.push((Token::String(text), start..end));
                i = end;
            }
            b'[' | b']' | b'{' | b'}' | b'(' | b')' | b',' | b';' => {
                out.push((Token::Special(b[i]), start..i + 1));
                i += 1;
            }
            b':' => {
                let end = word_end(b, i + 1);
                if end == i + 1 {
                    return Err(format!("a ':' without a tag name at byte {i}"));
                }
                out.push((Token::Tag(script[i + 1..end].to_ascii_lowercase()), start..end));
                i = end;
            }
            b'0'..=b'9' => {
                i = b[i..].iter().position(|c| !c.is_ascii_digit()).map_or(b.len(), |n| i + n);
                if matches!(b.get(i), Some(b'K' | b'M' | b'G' | b'k' | b'm' | b'g')) {
                    i += 1;
                }
                out.push((Token::Number, start..i));
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let end = word_end(b, i);
                let word = script[i..end].to_ascii_lowercase();
                if word == "text" && b.get(end) == Some(&b':') {
                    let (text, end) = multi_line(script, end + 1)?;
                    out.push((Token::String(text), start..end));
                    i = end;
                } else {
                    out.push((Token::Identifier(word), start..end));
                    i = end;
                }
            }
            c => return Err(format!("unexpected character {:?} at byte {i}", char::from(c))),
        }
    }
    Ok(out)
}

fn line_end(b: &[u8], from: usize) -> usize {
    b[from..].iter().position(|&c| c == b'\n').map_or(b.len(), |n| from + n + 1)
}

fn find(b: &[u8], from: usize, what: &[u8]) -> Option<usize> {
    b.get(from..)?.windows(what.len()).position(|w| w == what).map(|n| from + n)
}

fn word_end(b: &[u8], from: usize) -> usize {
    b[from..].iter().position(|c| !(c.is_ascii_alphanumeric() || *c == b'_')).map_or(b.len(), |n| from + n)
}

/// A quoted string from the `"` at `at`: its text (a backslash takes the
/// next character as it is) and the byte after its closing `"`.
fn quoted(script: &str, at: usize) -> Result<(String, usize), String> {
    let mut text = String::new();
    let mut chars = script[at + 1..].char_indices();
    while let Some((n, c)) = chars.next() {
        match c {
            '"' => return Ok((text, at + 1 + n + 1)),
            '\\' => match chars.next() {
                Some((_, next)) => text.push(next),
                None => break,
            },
            c => text.push(c),
        }
    }
    Err(format!("a string opened at byte {at} is never closed"))
}

/// A `text:` string starting after the `:` at `from`: the rest of that line
/// is blanks or a `#` comment, then lines up to one that is a single `.`
/// (a line starting with `..` stands for one starting with `.`).
fn multi_line(script: &str, from: usize) -> Result<(String, usize), String> {
    let b = script.as_bytes();
    let mut i = from;
    while matches!(b.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    match b.get(i) {
        Some(b'#') => i = line_end(b, i),
        Some(b'\r') if b.get(i + 1) == Some(&b'\n') => i += 2,
        Some(b'\n') => i += 1,
        _ => return Err(format!("text: at byte {from} is not followed by the end of its line")),
    }
    let mut text = String::new();
    while i < b.len() {
        let end = line_end(b, i);
        let line = &script[i..end];
        let bare = line.trim_end_matches(['\r', '\n']);
        if bare == "." {
            return Ok((text, end));
        }
        text.push_str(line.strip_prefix('.').filter(|l| l.starts_with('.')).unwrap_or(line));
        i = end;
    }
    Err(format!("text: at byte {from} is never ended by a line holding only '.'"))
}

/// Every `redirect` command in `script`, in order.
pub fn redirects(script: &str) -> Result<Vec<Redirect>, String> {
    let tokens = tokens(script)?;
    let mut found = Vec::new();
    let mut statement = true;
    let mut i = 0;
    while i < tokens.len() {
        let (token, span) = &tokens[i];
        let starts_redirect = statement && matches!(token, Token::Identifier(w) if w == "redirect");
        statement = matches!(token, Token::Special(b';' | b'{' | b'}'));
        if !starts_redirect {
            i += 1;
            continue;
        }
        let end = tokens[i..]
            .iter()
            .position(|(t, _)| matches!(t, Token::Special(b';' | b'{' | b'}')))
            .map(|n| i + n)
            .filter(|&n| tokens[n].0 == Token::Special(b';'))
            .ok_or_else(|| format!("the redirect at byte {} does not end with ';'", span.start))?;
        let args = &tokens[i + 1..end];
        let copy = args.iter().any(|(t, _)| *t == Token::Tag("copy".into()));
        let strings: Vec<&String> = args
            .iter()
            .filter_map(|(t, _)| match t {
                Token::String(s) => Some(s),
                _ => None,
            })
            .collect();
        // Only `redirect [:copy] "address";` has an address known now:
        // another tag (`:list`, an extension's) or a variable means it is
        // only known at delivery.
        let plain = args.iter().all(|(t, _)| matches!(t, Token::String(_)) || *t == Token::Tag("copy".into()));
        let address = match strings.as_slice() {
            [one] if plain && !one.contains("${") => Some(one.trim().to_string()),
            _ => None,
        };
        found.push(Redirect { address, copy, span: span.start..tokens[end].1.end });
        statement = true;
        i = end + 1;
    }
    Ok(found)
}

/// The domain of `address` (`Name <local@domain>` or `local@domain`),
/// lowercased; `None` for a bare local part (delivered on this host).
pub fn domain(address: &str) -> Option<String> {
    let addr = match (address.rfind('<'), address.rfind('>')) {
        (Some(open), Some(close)) if open < close => &address[open + 1..close],
        _ => address,
    };
    addr.rsplit_once('@').map(|(_, d)| d.trim().trim_end_matches('.').to_ascii_lowercase())
}

impl Redirect {
    /// Whether this sends mail outside `internal` (the host's domains,
    /// matched exactly): an address only known at delivery counts as
    /// outside.
    pub fn is_external(&self, internal: &[String]) -> bool {
        match &self.address {
            None => true,
            Some(a) => domain(a).is_some_and(|d| !internal.iter().any(|i| i.eq_ignore_ascii_case(&d))),
        }
    }
}

/// What replaces an external redirect: a plain `redirect` had cancelled
/// the implicit keep, so `keep` takes its place and the message stays
/// with the user whatever else the script does (a later `discard` no
/// longer loses it); a `redirect :copy` goes without a trace of its own.
const KEEP_INSTEAD: &str = "keep; /* picket: external forwarding disabled */";
const NOTHING_INSTEAD: &str = "/* picket: external forwarding disabled */";

/// `script` without its external redirects, and how many it had; internal
/// ones stay as they are.
pub fn without_external(script: &str, internal: &[String]) -> Result<(String, usize), String> {
    let mut out = String::with_capacity(script.len());
    let mut at = 0;
    let mut removed = 0;
    for r in redirects(script)?.into_iter().filter(|r| r.is_external(internal)) {
        out.push_str(&script[at..r.span.start]);
        out.push_str(if r.copy { NOTHING_INSTEAD } else { KEEP_INSTEAD });
        at = r.span.end;
        removed += 1;
    }
    out.push_str(&script[at..]);
    Ok((out, removed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn internal() -> Vec<String> {
        vec!["example.org".to_string()]
    }

    #[test]
    fn redirects_in_blocks_are_found_with_their_addresses() {
        let s = "require [\"copy\"];\nif header :contains \"subject\" \"x\" {\n  redirect :copy \"a@external.example\";\n} else { redirect \"Bob <bob@Example.ORG>\"; }\nredirect \"carol\";\n";
        let r = redirects(s).expect("parses");
        assert_eq!(r.len(), 3);
        assert_eq!((r[0].address.as_deref(), r[0].copy), (Some("a@external.example"), true));
        assert_eq!((r[1].address.as_deref(), r[1].copy), (Some("Bob <bob@Example.ORG>"), false));
        assert!(r[0].is_external(&internal()));
        assert!(!r[1].is_external(&internal()), "an internal domain, any case");
        assert!(!r[2].is_external(&internal()), "a local user");
    }

    #[test]
    fn strings_and_comments_are_not_commands() {
        let s = "# redirect \"a@evil.example\";\n/* redirect \"b@evil.example\"; */\nif header :is \"x\" \"; redirect \\\"c@evil.example\\\";\" { keep; }\nfileinto text:\nredirect \"d@evil.example\";\n..\n.\n;";
        let r = redirects(s).expect("parses");
        assert!(r.is_empty(), "{r:?}");
    }

    #[test]
    fn an_address_only_known_at_delivery_counts_as_external() {
        let s =
            "require [\"variables\"];\nset \"to\" \"bob@example.org\";\nredirect \"${to}\";\nredirect :list \"x\";\n";
        let r = redirects(s).expect("parses");
        assert_eq!(r.len(), 2);
        assert!(r.iter().all(|r| r.address.is_none() && r.is_external(&internal())));
    }

    #[test]
    fn external_redirects_go_and_everything_else_stays_byte_for_byte() {
        let s = "require [\"copy\"];\r\nredirect :copy \"x@external.example\";\r\nredirect \"bob@example.org\";\r\nif true { redirect \"y@external.example\"; discard; }\r\n";
        let (out, n) = without_external(s, &internal()).expect("parses");
        assert_eq!(n, 2);
        assert_eq!(
            out,
            format!("require [\"copy\"];\r\n{NOTHING_INSTEAD}\r\nredirect \"bob@example.org\";\r\nif true {{ {KEEP_INSTEAD} discard; }}\r\n")
        );
        assert!(redirects(&out).expect("still parses").iter().all(|r| !r.is_external(&internal())));
        let (same, none) = without_external(&out, &internal()).expect("parses");
        assert_eq!((same.as_str(), none), (out.as_str(), 0), "a second pass changes nothing");
    }

    #[test]
    fn unreadable_scripts_are_errors_never_panics() {
        for bad in
            ["redirect \"a@b", "redirect \"a@b\"", "/* open", "text:", "redirect text:\nx\n", "é", ":", "redirect { }"]
        {
            assert!(without_external(bad, &internal()).is_err(), "{bad:?}");
        }
        assert!(redirects(&"x".repeat(MAX_SCRIPT + 1)).is_err());
    }
}
