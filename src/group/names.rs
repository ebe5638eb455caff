//! What a group name, a context key and a shared value may be.
//!
//! Group names and keys end up inside other values (`@agent-groups` is
//! `build:3 review:2`, `@agent-joined` is `7:build`) and inside option names
//! (`@agent-ctx-KEY`), so they are kept to a small alphabet that needs no
//! quoting anywhere: 1 to [`NAME_MAX`] characters from `A-Z a-z 0-9 _ . -`.
//! A shared value is data of any kind, but it must fit on one line (tmux
//! options are single-line by this project's rule, DESIGN.md D5) and in
//! [`VALUE_MAX`] bytes.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest group name or context key, in characters.
pub const NAME_MAX: usize = 64;

/// The largest shared value, in bytes of UTF-8.
pub const VALUE_MAX: usize = 4096;

/// The characters allowed in names, for error messages.
pub const NAME_ALPHABET: &str = "A-Z a-z 0-9 _ . -";

/// Input that cannot be a group name, a key or a shared value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// A group name or key outside the alphabet or the length limit.
    #[error("invalid {what} {value:?}: use 1 to {NAME_MAX} characters from {NAME_ALPHABET}")]
    Name {
        /// "group name" or "key".
        what: &'static str,
        value: String,
    },
    /// A shared value over [`VALUE_MAX`] bytes.
    #[error("the value is {len} bytes long; the limit is {VALUE_MAX} bytes")]
    ValueTooLong { len: usize },
    /// A shared value holding a line break or another control character.
    #[error("the value must be a single line of text: it contains {found}")]
    ValueNotOneLine {
        /// e.g. "a newline" or "the control character U+001B".
        found: String,
    },
}

fn is_name(s: &str) -> bool {
    (1..=NAME_MAX).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

macro_rules! name_type {
    ($(#[$doc:meta])* $ty:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $ty(String);

        impl $ty {
            /// Checks `s` against the alphabet and the length limit.
            pub fn new(s: &str) -> Result<Self, InputError> {
                if is_name(s) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(InputError::Name {
                        what: $what,
                        value: s.to_owned(),
                    })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $ty {
            type Err = InputError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $ty {
            type Error = InputError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::new(&s)
            }
        }

        impl From<$ty> for String {
            fn from(name: $ty) -> String {
                name.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_type!(
    /// A coordination group's name, as in `@agent-group`.
    GroupName,
    "group name"
);

name_type!(
    /// The KEY of a shared value, stored as `@agent-ctx-KEY`.
    ContextKey,
    "key"
);

/// Checks a shared value (or a goal or type given to `tmux-agent new`): one
/// line, at most [`VALUE_MAX`] bytes. Tabs are allowed; every other control
/// character is refused, since a status line would send it to the terminal.
pub fn check_value(value: &str) -> Result<(), InputError> {
    if value.len() > VALUE_MAX {
        return Err(InputError::ValueTooLong { len: value.len() });
    }
    if let Some(c) = value.chars().find(|&c| c.is_control() && c != '\t') {
        let found = match c {
            '\n' => "a newline".to_owned(),
            '\r' => "a carriage return".to_owned(),
            '\0' => "a NUL character".to_owned(),
            c => format!("the control character U+{:04X}", u32::from(c)),
        };
        return Err(InputError::ValueNotOneLine { found });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_to_the_alphabet() {
        for ok in ["build", "a", "A.b-c_9", &"x".repeat(NAME_MAX)] {
            assert_eq!(GroupName::new(ok).unwrap().as_str(), ok);
            assert!(ContextKey::new(ok).is_ok());
        }
        for bad in [
            "",
            "a b",
            "a:b",
            "a,b",
            "a;b",
            "#{x}",
            "é",
            "a\n",
            "$1",
            &"x".repeat(NAME_MAX + 1),
        ] {
            let err = GroupName::new(bad).unwrap_err();
            assert!(err.to_string().contains(NAME_ALPHABET), "{err}");
            assert!(ContextKey::new(bad).is_err());
        }
        let err = ContextKey::new("a b").unwrap_err().to_string();
        assert!(err.starts_with("invalid key \"a b\""), "{err}");
    }

    #[test]
    fn values_are_one_line_and_bounded() {
        for ok in [
            "",
            "refactor the parser",
            "tab\there",
            "#(touch x) #{y} ;'\"",
            "é",
        ] {
            assert_eq!(check_value(ok), Ok(()));
        }
        assert!(check_value(&"x".repeat(VALUE_MAX)).is_ok());
        assert_eq!(
            check_value(&"x".repeat(VALUE_MAX + 1)),
            Err(InputError::ValueTooLong { len: VALUE_MAX + 1 })
        );
        let err = check_value("a\nb").unwrap_err().to_string();
        assert!(err.contains("a newline"), "{err}");
        assert!(
            check_value("a\rb")
                .unwrap_err()
                .to_string()
                .contains("carriage return")
        );
        assert!(
            check_value("\u{1b}[31m")
                .unwrap_err()
                .to_string()
                .contains("U+001B")
        );
        assert!(check_value("a\0").is_err());
    }

    #[test]
    fn names_round_trip_through_json_and_refuse_bad_ones() {
        let name: GroupName = serde_json::from_str("\"build\"").unwrap();
        assert_eq!(serde_json::to_string(&name).unwrap(), "\"build\"");
        assert!(serde_json::from_str::<GroupName>("\"a b\"").is_err());
    }
}
