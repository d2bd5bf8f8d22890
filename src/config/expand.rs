//! `${VAR}` expansion in the values that may hold deployment-specific text (`base_url`,
//! `app_key`, `app_secret`, `app_secret_file`, header values): `${VAR}` is the environment
//! variable's value, `$$` a literal `$`, and any other `$` is kept as it is.

use super::error::ConfigError;

/// Looks up environment variables; tests pass their own.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Expands `s`. Every variable that is not set is named in one error for `key` (never a
/// value); a malformed `${` is an error too.
pub fn expand(s: &str, key: &str, env: EnvLookup) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(s.len());
    let mut unset: Vec<&str> = Vec::new();
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('{') {
            let Some(end) = r.find('}') else {
                return Err(ConfigError::new(
                    key,
                    "unterminated ${ in value (write ${NAME}, or $$ for a literal $)",
                ));
            };
            let var = &r[..end];
            if var.is_empty() || !var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(ConfigError::new(
                    key,
                    format!(
                        "invalid variable name {} in ${{…}} (letters, digits and _ such as ${{TIBIOT_APP_SECRET}})",
                        tibiot_web::redact::shown(var)
                    ),
                ));
            }
            match env(var) {
                Some(v) => out.push_str(&v),
                None if !unset.contains(&var) => unset.push(var),
                None => {}
            }
            rest = &r[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    match unset.as_slice() {
        [] => Ok(out),
        [one] => Err(ConfigError::new(
            key,
            format!("environment variable {one} is not set"),
        )),
        many => Err(ConfigError::new(
            key,
            format!("environment variables {} are not set", many.join(", ")),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        (k == "TOKEN").then(|| "tok-123".into())
    }

    #[test]
    fn expansion() {
        let f = &env;
        assert_eq!(expand("a$$b${TOKEN}c$", "k", f).unwrap(), "a$btok-123c$");
        assert!(expand("${TOKEN", "k", f).is_err());
        assert!(expand("${}", "k", f).is_err());
        let e = expand("${A}${TOKEN}${B}${A}", "k", f).unwrap_err();
        assert_eq!(e.message, "environment variables A, B are not set");
        assert!(!e.message.contains("tok-123"));
    }
}
