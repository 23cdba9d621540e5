//! Credentials in URLs (`http://user:secret@host/...`) stay in the config
//! file and the state file (0600, which a restart resumes from); anything an
//! operator or a log collector sees says `***` in their place: logs, errors,
//! a rollout's history and status.

/// `text` with the user-info part of every URL in it (`scheme://USER@host`)
/// replaced by `***`.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        // The authority ends at a path, query, fragment, space or quote.
        let end = after
            .find(|c: char| matches!(c, '/' | '?' | '#' | '"' | '\'') || c.is_whitespace())
            .unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rfind('@') {
            Some(userinfo_end) => {
                out.push_str("***");
                out.push_str(&authority[userinfo_end..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_goes_and_nothing_else_changes() {
        for (text, want) in [
            ("http://127.0.0.1:9090", "http://127.0.0.1:9090"),
            (
                "http://admin:s3cret@127.0.0.1:9090/api?q=a@b",
                "http://***@127.0.0.1:9090/api?q=a@b",
            ),
            ("http://token@hooks.local/x", "http://***@hooks.local/x"),
            (
                "GET http://u:p@h:1/api/v1/query: refused; and \"http://v:q@g\" too",
                "GET http://***@h:1/api/v1/query: refused; and \"http://***@g\" too",
            ),
            ("p@ss://", "p@ss://"),
            ("no url at all: a@b", "no url at all: a@b"),
            ("http://a:b@c@host:1/", "http://***@host:1/"),
        ] {
            assert_eq!(redact(text), want, "{text}");
        }
    }
}
