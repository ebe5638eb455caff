//! `${VAR}` and `${VAR:-default}` expansion in server entries, as Claude
//! Code documents it for `command`, `args`, `env`, `url` and `headers`.
//!
//! Only those two forms are expanded. A bare `$VAR` is left as it is, and so
//! is a `$` not followed by `{`. `${VAR:-default}` uses `default` when `VAR`
//! is unset *or empty* (the shell's meaning of `:-`); the default is literal
//! text up to the first `}` (no nesting). An unset variable without a default
//! is an error naming the variable, so the caller can skip the server with a
//! warning instead of running it with a half-built command line.

use thiserror::Error;

/// Why a string could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ExpandError {
    #[error("${{{0}}} is not set and has no default (write ${{{0}:-default}} to give one)")]
    Unset(String),
    #[error("`${{` without a closing `}}` in {0:?}")]
    Unterminated(String),
    #[error("`${{{0}}}` is not a variable name")]
    BadName(String),
}

/// Expands `${VAR}` and `${VAR:-default}` in `text`, looking variables up
/// with `lookup`.
pub fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, ExpandError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(ExpandError::Unterminated(text.to_string()));
        };
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        if !is_name(name) {
            return Err(ExpandError::BadName(inner.to_string()));
        }
        match (lookup(name), default) {
            (Some(value), Some(default)) if value.is_empty() => out.push_str(default),
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => return Err(ExpandError::Unset(name.to_string())),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Option<String> {
        match name {
            "HOME" => Some("/home/u".into()),
            "EMPTY" => Some(String::new()),
            "TRICKY" => Some("${HOME}".into()),
            _ => None,
        }
    }

    #[test]
    fn expands_the_two_forms_only() {
        let cases = [
            ("${HOME}/x", "/home/u/x"),
            (
                "${NOPE:-http://127.0.0.1:8080}/mcp",
                "http://127.0.0.1:8080/mcp",
            ),
            ("${HOME:-/fallback}", "/home/u"),
            ("${EMPTY:-d}", "d"),
            ("${EMPTY}", ""),
            ("$HOME and $", "$HOME and $"),
            ("a${HOME}b${HOME}c", "a/home/ub/home/uc"),
            ("${NOPE:-}", ""),
            // A value is not expanded again.
            ("${TRICKY}", "${HOME}"),
            ("no vars", "no vars"),
            ("ünïcödé ${HOME}", "ünïcödé /home/u"),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input, &vars).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn reports_what_is_wrong() {
        assert_eq!(
            expand("Bearer ${TOKEN}", &vars),
            Err(ExpandError::Unset("TOKEN".into()))
        );
        assert_eq!(
            expand("${HOME", &vars),
            Err(ExpandError::Unterminated("${HOME".into()))
        );
        assert_eq!(
            expand("${1X}", &vars),
            Err(ExpandError::BadName("1X".into()))
        );
        assert_eq!(expand("${}", &vars), Err(ExpandError::BadName("".into())));
        let message = ExpandError::Unset("TOKEN".into()).to_string();
        assert_eq!(
            message,
            "${TOKEN} is not set and has no default (write ${TOKEN:-default} to give one)"
        );
    }
}
