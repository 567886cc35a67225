//! What the agent tells the coordinator about its host, read from /proc and
//! /etc. Missing files give empty strings, never an error.

pub fn hostname() -> String {
    read_trimmed("/proc/sys/kernel/hostname")
}

pub fn kernel() -> String {
    read_trimmed("/proc/sys/kernel/osrelease")
}

/// `PRETTY_NAME` from os-release, else `NAME VERSION_ID`.
pub fn os() -> String {
    let text = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .unwrap_or_default();
    parse_os_release(&text)
}

fn parse_os_release(text: &str) -> String {
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim().trim_matches('"').to_string())
    };
    field("PRETTY_NAME")
        .or_else(|| Some(format!("{} {}", field("NAME")?, field("VERSION_ID").unwrap_or_default())))
        .unwrap_or_else(|| "Linux".to_string())
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_pretty_name_wins() {
        let text = "NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
        assert_eq!(parse_os_release(text), "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(parse_os_release("NAME=Alpine\nVERSION_ID=3.19\n"), "Alpine 3.19");
        assert_eq!(parse_os_release(""), "Linux");
    }
}
