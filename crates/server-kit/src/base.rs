//! Serving under a path prefix (`--base-path`), so that a reverse proxy can
//! put each server of each host under its own path (`https://gw/host-a/wsep/`)
//! and pass requests on unchanged: the server, not the proxy, knows where it
//! lives, so the URLs it hands out (webexec's `Location`, pow's OpenAPI
//! `servers`) are right.

/// A base path as routes see it: a leading slash, no trailing one, and
/// empty for `/` (`api/v1/pow/` and `/api/v1/pow` give `/api/v1/pow`).
///
/// Only the path's own segments count: empty ones (`//`) are dropped, so
/// that what the operator typed and what the router nests agree.
pub fn base_prefix(given: &str) -> String {
    given.split('/').filter(|segment| !segment.is_empty()).fold(
        String::new(),
        |mut out, segment| {
            out.push('/');
            out.push_str(segment);
            out
        },
    )
}

/// Checks a `--base-path` as given: only characters a URL path may carry
/// unescaped (letters, digits, `-._~!$&'()+,;=:@%` and `/`), so that it is
/// one route, never a pattern (`{id}`, `*rest`) or a query. Public for a
/// server that reads the base path from elsewhere than a flag (a file).
pub fn parse_base_path(given: &str) -> Result<String, String> {
    let bad = given
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-._~!$&'()+,;=:@%/".contains(*c)));
    match bad {
        Some(c) => Err(format!(
            "{c:?} cannot be in a base path: use letters, digits, / and -._~!$&'()+,;=:@%"
        )),
        None => Ok(given.to_owned()),
    }
}

/// Whether `path` lies under `prefix` (as [`base_prefix`] made it): the
/// prefix itself, or the prefix and a `/`. `/wsepx` is not under `/wsep`.
pub fn under_base(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(base_prefix("/"), "");
        assert_eq!(base_prefix(""), "");
        assert_eq!(base_prefix("/api/v1/pow/"), "/api/v1/pow");
        assert_eq!(base_prefix("host-a//wsep"), "/host-a/wsep");
    }

    #[test]
    fn checked() {
        assert!(parse_base_path("/host-a/wsep/").is_ok());
        assert!(parse_base_path("/a/{id}/").is_err());
        assert!(parse_base_path("/a/*rest").is_err());
        assert!(parse_base_path("/a?b").is_err());
    }

    #[test]
    fn under() {
        assert!(under_base("/anything", ""));
        assert!(under_base("/host-a/wsep", "/host-a/wsep"));
        assert!(under_base("/host-a/wsep/", "/host-a/wsep"));
        assert!(under_base("/host-a/wsep/x", "/host-a/wsep"));
        assert!(!under_base("/host-a/wsepx", "/host-a/wsep"));
        assert!(!under_base("/", "/host-a/wsep"));
    }
}
