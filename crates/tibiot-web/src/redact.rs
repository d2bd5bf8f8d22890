//! Keeping values out of configuration error messages. A mangled YAML document can put
//! anything where a setting was expected (a block scalar holding the rest of the file, a
//! password hash, a secret), and serde's messages quote what they found. These helpers are
//! shared by the web configuration here and by any exporter configuration loader.

/// A configuration value for an error message: quoted when it looks like the short token a
/// setting takes (`TLS13`, `hmac-sha256`, `+08:00`), else only its length. A mangled
/// document can put anything where a setting was expected (a block scalar holding the rest
/// of the file, a bcrypt hash), and an error must not show it.
pub fn shown(value: &str) -> String {
    let token = value.len() <= 40
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '+'));
    if token {
        format!("{value:?}")
    } else {
        format!("a value of {} characters", value.chars().count())
    }
}

/// A key for an error message: quoted when it is a short `[a-z_]+` token (the shape of every
/// setting name), else only its length. An indentation slip can turn a value into a key
/// (`app_secret:` followed by the secret on a deeper line), so an unknown key that does not
/// look like a setting name is never echoed.
pub fn shown_key(key: &str) -> String {
    if key_is_shown(key) {
        format!("`{key}`")
    } else {
        format!("an unknown key of {} characters", key.chars().count())
    }
}

/// Whether [`shown_key`] quotes `key`.
pub fn key_is_shown(key: &str) -> bool {
    (1..=32).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

/// A serde error message without the values it quotes (`invalid type: string "…"`,
/// `integer `…``, …): when a document is mangled, the quoted value may be a secret, or a
/// whole mangled file that holds one. An unknown variant is kept when it is [`shown`]. The
/// key path and line still say where the error is.
pub fn hide_quoted_values(msg: &str) -> String {
    const FIELD: &str = "unknown field `";
    if let Some(i) = msg.find(FIELD) {
        let after = &msg[i + FIELD.len()..];
        let end = after
            .rfind("`, expected")
            .or_else(|| after.rfind("`, there are no fields"));
        let (key, tail) = match end {
            Some(e) => (&after[..e], &after[e + 1..]),
            None => (after, ""),
        };
        let shown = if key_is_shown(key) {
            format!("unknown field `{key}`")
        } else {
            shown_key(key)
        };
        return format!("{}{shown}{}", hide_quoted_values(&msg[..i]), tail);
    }
    const VARIANT: &str = "unknown variant `";
    if let Some(i) = msg.find(VARIANT) {
        let after = &msg[i + VARIANT.len()..];
        // the expected list that follows holds no "`, expected": the last one ends the value
        let end = after
            .rfind("`, expected")
            .or_else(|| after.rfind("`, there are no variants"));
        let (value, tail) = match end {
            Some(e) => (&after[..e], &after[e + 1..]),
            None => (after, ""),
        };
        return format!(
            "{}unknown variant {}{}",
            hide_quoted_values(&msg[..i]),
            shown(value),
            hide_quoted_values(tail)
        );
    }
    const QUOTED: [(&str, char, &str); 4] = [
        ("string \"", '"', "a string"),
        ("integer `", '`', "an integer"),
        ("floating point `", '`', "a number"),
        ("character `", '`', "a character"),
    ];
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    loop {
        let next = QUOTED
            .iter()
            .filter_map(|q| rest.find(q.0).map(|i| (i, q)))
            .min_by_key(|(i, _)| *i);
        let Some((i, &(opening, close, word))) = next else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..i]);
        out.push_str(word);
        let mut chars = rest[i + opening.len()..].char_indices();
        let mut end = None;
        while let Some((j, c)) = chars.next() {
            if c == '\\' {
                chars.next();
            } else if c == close {
                end = Some(j + c.len_utf8());
                break;
            }
        }
        // An unterminated quote hides everything after it.
        let Some(end) = end else { return out };
        rest = &rest[i + opening.len() + end..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_are_hidden_and_the_rest_kept() {
        assert_eq!(
            hide_quoted_values(r#"invalid type: string "a \"b\" c", expected u32"#),
            "invalid type: a string, expected u32"
        );
        assert_eq!(
            hide_quoted_values(
                "invalid type: integer `42`, expected a sequence; floating point `1.5`"
            ),
            "invalid type: an integer, expected a sequence; a number"
        );
        assert_eq!(
            hide_quoted_values(r#"x: string "unterminated \"#),
            "x: a string"
        );
        assert_eq!(
            hide_quoted_values("unknown field `bogus`, expected one of `a`"),
            "unknown field `bogus`, expected one of `a`"
        );
        assert_eq!(
            hide_quoted_values("unknown field `S3cr3t-Value`, expected one of `a`"),
            "an unknown key of 12 characters, expected one of `a`"
        );
        assert_eq!(hide_quoted_values("string \"é\" ok"), "a string ok");
        assert_eq!(
            hide_quoted_values("unknown variant `kerberos`, expected `hmac-sha256` or `none`"),
            "unknown variant \"kerberos\", expected `hmac-sha256` or `none`"
        );
        assert_eq!(
            hide_quoted_values("unknown variant `app_secret: s3cr3t\n`, expected `none`"),
            "unknown variant a value of 19 characters, expected `none`"
        );
        assert_eq!(
            hide_quoted_values("unknown variant `$2b$04$abc`, there are no variants"),
            "unknown variant a value of 10 characters, there are no variants"
        );
    }
}
