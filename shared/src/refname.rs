//! Name rules: git's `check-ref-format` for branches, and the stricter rules for environment
//! names, which become parts of tag and ref names (`deploy/<env>/...`).

/// Returns why `name` is not a valid full ref name per `git check-ref-format`, or `None`.
pub fn ref_format_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("is empty");
    }
    if name.starts_with('-') {
        return Some("starts with '-'");
    }
    if name.starts_with('/') || name.ends_with('/') {
        return Some("starts or ends with '/'");
    }
    if name.ends_with('.') {
        return Some("ends with '.'");
    }
    if name.contains("..") {
        return Some("contains '..'");
    }
    if name.contains("//") {
        return Some("contains an empty path component ('//')");
    }
    if name.contains("@{") {
        return Some("contains '@{'");
    }
    if name == "@" {
        return Some("is '@'");
    }
    for c in name.chars() {
        if c.is_control() || c == ' ' {
            return Some("contains a space or control character");
        }
        if matches!(c, '~' | '^' | ':' | '?' | '*' | '[' | '\\') {
            return Some("contains one of ~ ^ : ? * [ \\");
        }
    }
    for component in name.split('/') {
        if component.starts_with('.') {
            return Some("has a path component starting with '.'");
        }
        if component.ends_with(".lock") {
            return Some("has a path component ending with '.lock'");
        }
    }
    None
}

/// Returns why `branch` (a short name such as `env/prod`) is not usable as a branch.
pub fn branch_problem(branch: &str) -> Option<&'static str> {
    if branch == "HEAD" {
        return Some("is 'HEAD'");
    }
    if branch.starts_with("refs/") {
        return Some(
            "is a full ref name; give the short branch name (env/prod, not refs/heads/env/prod)",
        );
    }
    ref_format_problem(branch)
}

/// Environment names are one ref component (they appear in `deploy/<env>/...` tag names),
/// so they are held to a conservative alphabet that is also safe in shells and file names.
pub fn env_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("is empty");
    }
    if name.len() > 63 {
        return Some("is longer than 63 characters");
    }
    if !name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
    {
        return Some("must start with a letter or digit");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Some("may only contain letters, digits, '-', '_' and '.'");
    }
    if name.contains("..") {
        return Some("contains '..'");
    }
    if name.ends_with('.') || name.ends_with(".lock") {
        return Some("ends with '.' or '.lock'");
    }
    None
}

/// A Kubernetes namespace name is an RFC 1123 DNS label.
pub fn dns_label_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("is empty");
    }
    if name.len() > 63 {
        return Some("is longer than 63 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Some("may only contain lowercase letters, digits and '-'");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Some("must start and end with a letter or digit");
    }
    None
}

/// Helm's rule for release names (`helm install` refuses others): at most 53 characters, a
/// DNS subdomain of lowercase letters, digits, '-' and '.'.
pub fn helm_release_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("is empty");
    }
    if name.len() > 53 {
        return Some("is longer than 53 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    {
        return Some("may only contain lowercase letters, digits, '-' and '.'");
    }
    let ok_part = |p: &str| {
        !p.is_empty()
            && p.starts_with(|c: char| c.is_ascii_alphanumeric())
            && p.ends_with(|c: char| c.is_ascii_alphanumeric())
    };
    if !name.split('.').all(ok_part) {
        return Some("must start and end with a letter or digit, also around each '.'");
    }
    None
}

/// A manifests path is relative to the repository root and may not leave it.
pub fn repo_path_problem(path: &str) -> Option<&'static str> {
    if path.is_empty() {
        return Some("is empty (use '.' for the repository root)");
    }
    if path.starts_with('/') {
        return Some("is absolute; give a path relative to the repository root");
    }
    if path.contains('\\') {
        return Some("contains '\\'; use '/' as the separator");
    }
    if path.split('/').any(|c| c == "..") {
        return Some("contains '..'; it must stay inside the repository");
    }
    None
}

/// `deploy/overlays/dev/` and `./deploy/overlays/dev` both mean `deploy/overlays/dev`;
/// `.` and `./` mean the repository root, returned as the empty string.
pub fn normalize_repo_path(path: &str) -> String {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_names_follow_git() {
        assert_eq!(branch_problem("env/prod"), None);
        assert_eq!(branch_problem("release-1.2"), None);
        for bad in [
            "env..prod",
            "env/prod.lock",
            "-env",
            "env prod",
            "env:prod",
            "env/",
            "/env",
            "env//prod",
            "env/.hidden",
            "a@{b",
            "HEAD",
            "refs/heads/x",
            "x~1",
            "x^",
            "x?",
            "x*",
            "x[",
            "x\\y",
            "",
        ] {
            assert!(branch_problem(bad).is_some(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn env_names_are_one_safe_component() {
        assert_eq!(env_name_problem("prod"), None);
        assert_eq!(env_name_problem("eu-west_1.prod"), None);
        for bad in [
            "",
            "a/b",
            "-x",
            "..",
            "a..b",
            ".x",
            "x.",
            "a b",
            "x.lock",
            &"a".repeat(64),
        ] {
            assert!(
                env_name_problem(bad).is_some(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn namespaces_are_dns_labels() {
        assert_eq!(dns_label_problem("team-a1"), None);
        for bad in ["", "Team", "-a", "a-", "a_b", "a.b", &"a".repeat(64)] {
            assert!(
                dns_label_problem(bad).is_some(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn helm_release_names_follow_helm() {
        for good in ["podinfo", "web-1", "a.b-c", "x", &"a".repeat(53)] {
            assert_eq!(helm_release_problem(good), None, "{good:?}");
        }
        for bad in [
            "",
            "Web",
            "a_b",
            "-a",
            "a-",
            "a..b",
            ".a",
            "a.",
            "a/b",
            &"a".repeat(54),
        ] {
            assert!(
                helm_release_problem(bad).is_some(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn repo_paths_stay_inside() {
        assert_eq!(repo_path_problem("deploy/overlays/dev"), None);
        assert_eq!(repo_path_problem("."), None);
        assert!(repo_path_problem("../x").is_some());
        assert!(repo_path_problem("a/../../x").is_some());
        assert!(repo_path_problem("/etc").is_some());
        assert_eq!(normalize_repo_path("./deploy//dev/"), "deploy/dev");
        assert_eq!(normalize_repo_path("."), "");
    }
}

/// Returns why `url` is not usable as a webhook for notifications: an `http://` or
/// `https://` URL with a host. The reason never quotes the URL, which often carries a token.
pub fn webhook_url_problem(url: &str) -> Option<&'static str> {
    let rest = match url.split_once("://") {
        Some(("http" | "https", rest)) => rest,
        _ => return Some("is not an http:// or https:// URL"),
    };
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Some("contains a space or control character");
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') {
        return Some("has no host");
    }
    None
}

/// Returns why `name` is not a portable environment variable name (POSIX: letters, digits
/// and '_', not starting with a digit).
pub fn env_var_problem(name: &str) -> Option<&'static str> {
    let mut chars = name.chars();
    match chars.next() {
        None => Some("is empty"),
        Some(c) if !(c.is_ascii_alphabetic() || c == '_') => {
            Some("must start with a letter or '_'")
        }
        _ if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') => {
            Some("may only contain letters, digits and '_'")
        }
        _ => None,
    }
}

#[cfg(test)]
mod webhook_tests {
    use super::*;

    #[test]
    fn webhooks_are_http_urls_with_a_host() {
        for ok in [
            "https://hooks.slack.com/services/T0/B0/xyz",
            "http://127.0.0.1:8080/hook",
            "https://user:pw@example.com",
        ] {
            assert_eq!(webhook_url_problem(ok), None, "{ok}");
        }
        for (bad, why) in [
            ("ftp://x/y", "is not an http:// or https:// URL"),
            ("hooks.slack.com/x", "is not an http:// or https:// URL"),
            ("https:///path", "has no host"),
            ("https://:80/", "has no host"),
            ("https://a b/", "contains a space or control character"),
        ] {
            assert_eq!(webhook_url_problem(bad), Some(why), "{bad}");
        }
    }

    #[test]
    fn environment_variable_names_are_posix() {
        assert_eq!(env_var_problem("SLACK_URL"), None);
        assert_eq!(env_var_problem("_x1"), None);
        assert!(env_var_problem("").is_some());
        assert!(env_var_problem("1X").is_some());
        assert!(env_var_problem("A-B").is_some());
    }
}
