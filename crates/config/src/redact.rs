//! Hiding secrets when the configuration is shown.

/// Key names whose values are always secret.
const SECRET_WORDS: [&str; 5] = ["password", "secret", "token", "api_key", "credentials"];

/// Replaces the password in a URL's user-info with `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}{tail}")
            } else {
                url.to_string()
            }
        }
        None => url.to_string(),
    }
}

fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| k.contains(w))
}

fn redact(value: &mut toml::Value, key: &str) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t.iter_mut() {
                redact(v, k);
            }
        }
        toml::Value::Array(a) => a.iter_mut().for_each(|v| redact(v, key)),
        toml::Value::String(s) => {
            if is_secret_key(key) {
                *s = "***".into();
            } else if s.contains("://") {
                *s = redact_url(s);
            }
        }
        _ => {}
    }
}

/// Renders a TOML value with secrets replaced by `***`.
pub fn redacted_toml(mut value: toml::Value) -> String {
    redact(&mut value, "");
    toml::to_string_pretty(&value).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(redact_url("redis://u:p@h:1/0"), "redis://u:***@h:1/0");
        assert_eq!(redact_url("redis://:p@h:1"), "redis://:***@h:1");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("http://h:1/x@y"), "http://h:1/x@y");
        assert_eq!(redact_url("plain"), "plain");
    }
}
