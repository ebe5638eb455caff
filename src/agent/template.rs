//! Argument templates: JSON values whose strings hold `{placeholders}`,
//! rendered into tool arguments by substituting JSON values, never text.
//!
//! - A string that is exactly one placeholder, `"{context}"`, becomes the
//!   placeholder's value with its JSON type (an object stays an object).
//! - A placeholder inside a longer string, `"tmux:{host}:{session}"`, is
//!   replaced by the value's text (a string as itself, anything else as
//!   compact JSON, null as nothing).
//! - `{{` and `}}` are literal braces. Object keys are never templated.
//!
//! Substitution happens in the template only: a session named `{goal_id}`
//! is inserted as that literal text, never rendered again.

use serde_json::{Map, Value};

/// Errors in a template or while rendering one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unknown placeholder {{{name}}} (known: {known})")]
    Unknown { name: String, known: String },
    #[error(
        "placeholder {{{name}}} has no value yet (it is kept from an earlier call that has not succeeded)"
    )]
    Missing { name: String },
    #[error("unclosed {{ in {text:?} (write {{{{ for a literal brace)")]
    Unclosed { text: String },
    #[error("a lone }} in {text:?} (write }}}} for a literal brace)")]
    LoneClose { text: String },
}

/// One piece of a template string.
#[derive(Debug, PartialEq, Eq)]
enum Piece<'a> {
    Text(std::borrow::Cow<'a, str>),
    Placeholder(&'a str),
}

fn pieces(text: &str) -> Result<Vec<Piece<'_>>, TemplateError> {
    let mut out = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(['{', '}']) {
        literal.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("{{") {
            literal.push('{');
            rest = after;
        } else if let Some(after) = tail.strip_prefix("}}") {
            literal.push('}');
            rest = after;
        } else if tail.starts_with('}') {
            return Err(TemplateError::LoneClose {
                text: text.to_owned(),
            });
        } else {
            let end = tail.find('}').ok_or_else(|| TemplateError::Unclosed {
                text: text.to_owned(),
            })?;
            if !literal.is_empty() {
                out.push(Piece::Text(std::mem::take(&mut literal).into()));
            }
            out.push(Piece::Placeholder(&tail[1..end]));
            rest = &tail[end + 1..];
        }
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        out.push(Piece::Text(literal.into()));
    }
    Ok(out)
}

/// Checks that every placeholder in `template` is one of `known`.
pub fn validate(template: &Value, known: &[&str]) -> Result<(), TemplateError> {
    walk_strings(template, &mut |text| {
        for piece in pieces(text)? {
            if let Piece::Placeholder(name) = piece
                && !known.contains(&name)
            {
                return Err(TemplateError::Unknown {
                    name: name.to_owned(),
                    known: known.join(", "),
                });
            }
        }
        Ok(())
    })
}

fn walk_strings(
    value: &Value,
    f: &mut impl FnMut(&str) -> Result<(), TemplateError>,
) -> Result<(), TemplateError> {
    match value {
        Value::String(s) => f(s),
        Value::Array(items) => items.iter().try_for_each(|v| walk_strings(v, f)),
        Value::Object(map) => map.values().try_for_each(|v| walk_strings(v, f)),
        _ => Ok(()),
    }
}

/// Renders `template` with `vars`.
pub fn render(template: &Value, vars: &Map<String, Value>) -> Result<Value, TemplateError> {
    Ok(match template {
        Value::String(text) => render_string(text, vars)?,
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| render(v, vars))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), render(v, vars)?)))
                .collect::<Result<_, TemplateError>>()?,
        ),
        other => other.clone(),
    })
}

fn render_string(text: &str, vars: &Map<String, Value>) -> Result<Value, TemplateError> {
    let lookup = |name: &str| {
        vars.get(name).ok_or_else(|| TemplateError::Missing {
            name: name.to_owned(),
        })
    };
    let pieces = pieces(text)?;
    if let [Piece::Placeholder(name)] = pieces.as_slice() {
        return lookup(name).cloned();
    }
    let mut out = String::with_capacity(text.len());
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.push_str(&t),
            Piece::Placeholder(name) => match lookup(name)? {
                Value::String(s) => out.push_str(s),
                Value::Null => {}
                other => out.push_str(&other.to_string()),
            },
        }
    }
    Ok(Value::String(out))
}

/// Reads a value out of a tool result by a path like `id`, `$.id`,
/// `$.goal.id` or `entities.0.name` (numbers index arrays).
pub fn extract<'a>(result: &'a Value, path: &str) -> Option<&'a Value> {
    let path = path.strip_prefix('$').unwrap_or(path);
    let path = path.strip_prefix('.').unwrap_or(path);
    if path.is_empty() {
        return Some(result);
    }
    path.split('.')
        .try_fold(result, |value, segment| match value {
            Value::Object(map) => map.get(segment),
            Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars() -> Map<String, Value> {
        json!({
            "session": "a\"b'c\n{goal_id}#(x)",
            "session_id": "$3",
            "context": {"windows": [1, 2]},
            "created": 1700000000,
            "host": "vm",
            "goal": null,
        })
        .as_object()
        .unwrap()
        .clone()
    }

    #[test]
    fn whole_placeholders_keep_their_type_and_text_is_never_rerendered() {
        let template = json!({
            "name": "{session}",
            "context": "{context}",
            "entity": "tmux:{host}:{session_id}:{created}",
            "goal": "goal: {goal}",
            "braces": "{{literal}}",
            "n": 5,
        });
        let out = render(&template, &vars()).unwrap();
        assert_eq!(
            out,
            json!({
                "name": "a\"b'c\n{goal_id}#(x)",
                "context": {"windows": [1, 2]},
                "entity": "tmux:vm:$3:1700000000",
                "goal": "goal: ",
                "braces": "{literal}",
                "n": 5,
            })
        );
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(
            render(&json!("{goal_id}"), &vars()),
            Err(TemplateError::Missing {
                name: "goal_id".into()
            })
        );
        assert!(matches!(
            validate(&json!(["{nope}"]), &["session"]),
            Err(TemplateError::Unknown { .. })
        ));
        assert!(validate(&json!({"a": ["{session}", "x{session}y"]}), &["session"]).is_ok());
        assert!(matches!(
            render(&json!("{oops"), &vars()),
            Err(TemplateError::Unclosed { .. })
        ));
        assert!(matches!(
            render(&json!("oops}"), &vars()),
            Err(TemplateError::LoneClose { .. })
        ));
    }

    #[test]
    fn extract_follows_paths() {
        let result = json!({"id": 7, "goal": {"id": "g1"}, "entities": [{"name": "e"}]});
        assert_eq!(extract(&result, "$.id"), Some(&json!(7)));
        assert_eq!(extract(&result, "id"), Some(&json!(7)));
        assert_eq!(extract(&result, "$.goal.id"), Some(&json!("g1")));
        assert_eq!(extract(&result, "entities.0.name"), Some(&json!("e")));
        assert_eq!(extract(&result, "$.missing"), None);
        assert_eq!(extract(&result, "$"), Some(&result));
    }
}
