//! Reading user options back from `show-options` output.
//!
//! `show-options -t '$3'` (without `-v`) prints one line per option, with
//! the value quoted the way tmux's own command parser reads it:
//!
//! ```text
//! @agent-type coder
//! @agent-goal "fix \"the\" bug\n%end 1 2 1\n\$HOME tab\there \033[0m \377"
//! @agent-group \~home
//! @agent-note ''
//! ```
//!
//! So every value, newlines and all, stays on one line, and a single command
//! returns all of a session's options. That is why the sidecar reads options
//! this way rather than with `show-options -v`, whose raw output can hold
//! newlines and lines that look like protocol.
//!
//! A listing (`list-sessions -F`) can carry options too, one field per
//! option ([`listed_option`]), so one command reads every session's
//! options instead of one `show-options` per session. A raw `#{@name}`
//! there could hold a newline, or a line that looks like `%end`, so tmux
//! percent-encodes the four bytes that matter before printing
//! (`%`, tab, CR, LF) and [`decode_listed`] undoes it.

use std::collections::BTreeMap;

/// A `list-sessions` format field printing option `name` with `%`, tab, CR
/// and LF percent-encoded (`%25`, `%09`, `%0D`, `%0A`), so the value stays
/// inside its tab-separated field and its line. tmux applies `;`-chained
/// modifiers left to right: `%` first, so the later escapes are not
/// escaped again. The tab, CR and LF travel as real bytes inside the
/// patterns; the command line's quoting carries them.
pub fn listed_option(name: &str) -> String {
    format!("#{{s/%/%25/;s/\t/%09/;s/\r/%0D/;s/\n/%0A/:{name}}}")
}

/// Undoes [`listed_option`]'s encoding of one field. An unset option and
/// one set to the empty string both read as empty.
pub fn decode_listed(field: &[u8]) -> String {
    let mut out = Vec::with_capacity(field.len());
    let mut rest = field;
    while let Some((&byte, tail)) = rest.split_first() {
        let escaped = match tail {
            [b'2', b'5', ..] => Some(b'%'),
            [b'0', b'9', ..] => Some(b'\t'),
            [b'0', b'D', ..] => Some(b'\r'),
            [b'0', b'A', ..] => Some(b'\n'),
            _ => None,
        };
        match escaped {
            Some(decoded) if byte == b'%' => {
                out.push(decoded);
                rest = &tail[2..];
            }
            _ => {
                out.push(byte);
                rest = tail;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Errors reading a `show-options` line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read show-options line {line:?}: {reason}")]
pub struct OptionLineError {
    pub line: String,
    pub reason: &'static str,
}

/// Parses `show-options` output into name → value, keeping only the options
/// whose names start with `prefix` (e.g. `@agent-`). Values are decoded to
/// bytes and then to text (invalid UTF-8 replaced).
pub fn parse_options<'a>(
    lines: impl IntoIterator<Item = &'a [u8]>,
    prefix: &str,
) -> Result<BTreeMap<String, String>, OptionLineError> {
    let mut options = BTreeMap::new();
    for line in lines {
        if !line.starts_with(prefix.as_bytes()) {
            continue;
        }
        let (name, value) = parse_option_line(line)?;
        options.insert(name, value);
    }
    Ok(options)
}

/// Parses one `name value` line.
pub fn parse_option_line(line: &[u8]) -> Result<(String, String), OptionLineError> {
    let error = |reason| OptionLineError {
        line: String::from_utf8_lossy(line).into_owned(),
        reason,
    };
    let space = line
        .iter()
        .position(|&b| b == b' ')
        .ok_or_else(|| error("no value"))?;
    let name = String::from_utf8_lossy(&line[..space]).into_owned();
    let value = unquote(&line[space + 1..]).map_err(error)?;
    Ok((name, String::from_utf8_lossy(&value).into_owned()))
}

/// Splits a command as tmux prints it back into its arguments:
/// `#{pane_start_command}` is each argument quoted the way `show-options`
/// quotes a value, joined by spaces (`sh -c "sleep 1" 'q"x' n\nl \~h`).
/// Unlike an option value, a single-quoted argument there still holds
/// escapes (tmux vis-encodes every form), so they are undone in all three.
pub fn split_command(line: &[u8]) -> Result<Vec<String>, OptionLineError> {
    let error = |reason| OptionLineError {
        line: String::from_utf8_lossy(line).into_owned(),
        reason,
    };
    let mut words = Vec::new();
    let mut i = 0;
    while i < line.len() {
        if line[i] == b' ' {
            i += 1;
            continue;
        }
        let start = i;
        let quote = match line[i] {
            q @ (b'\'' | b'"') => {
                i += 1;
                Some(q)
            }
            _ => None,
        };
        loop {
            let Some(&b) = line.get(i) else {
                if quote.is_some() {
                    return Err(error("unclosed quote"));
                }
                break;
            };
            if b == b'\\' {
                i += 2;
                continue;
            }
            i += 1;
            match quote {
                Some(q) if b == q => break,
                None if b == b' ' => {
                    i -= 1;
                    break;
                }
                _ => {}
            }
        }
        let word = &line[start..i.min(line.len())];
        let inner = match quote {
            Some(_) => &word[1..word.len() - 1],
            None => word,
        };
        let bytes = unescape(inner).map_err(error)?;
        words.push(String::from_utf8_lossy(&bytes).into_owned());
    }
    Ok(words)
}

/// Undoes tmux's quoting of one word: `'single'` (no escapes), `"double"`
/// (C-style and octal escapes), or bare with backslash escapes.
fn unquote(word: &[u8]) -> Result<Vec<u8>, &'static str> {
    match word.first() {
        Some(b'\'') => {
            let inner = word
                .strip_suffix(b"'")
                .filter(|_| word.len() >= 2)
                .ok_or("unclosed single quote")?;
            Ok(inner[1..].to_vec())
        }
        Some(b'"') => {
            let inner = word
                .strip_suffix(b"\"")
                .filter(|_| word.len() >= 2)
                .ok_or("unclosed double quote")?;
            unescape(&inner[1..])
        }
        _ => unescape(word),
    }
}

fn unescape(text: &[u8]) -> Result<Vec<u8>, &'static str> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let b = text[i];
        i += 1;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let Some(&e) = text.get(i) else {
            return Err("a backslash at the end");
        };
        i += 1;
        match e {
            b'0'..=b'7' => {
                // Exactly three octal digits, as tmux writes them (`\033`).
                let digits = text.get(i - 1..i + 2).ok_or("short octal escape")?;
                if !digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                    return Err("bad octal escape");
                }
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                out.push(u8::try_from(value).map_err(|_| "octal escape over 255")?);
                i += 2;
            }
            b'a' => out.push(0x07),
            b'b' => out.push(0x08),
            b'e' => out.push(0x1b),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b's' => out.push(b' '),
            b't' => out.push(b'\t'),
            b'v' => out.push(0x0b),
            other => out.push(other),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listed_value_decodes_to_what_was_set() {
        assert_eq!(
            decode_listed(b"50%25%09\xc3\xa9%0Ax%0D%0A%25end 1 2 1%2"),
            "50%\t\u{e9}\nx\r\n%end 1 2 1%2"
        );
        assert_eq!(decode_listed(b""), "");
        // A `%` tmux did not write (it always writes %25) stays as it is.
        assert_eq!(decode_listed(b"%zz%"), "%zz%");
        let field = listed_option("@agent-goal");
        assert!(field.contains("s/%/%25/;"), "{field}");
        assert!(field.ends_with(":@agent-goal}"), "{field}");
    }

    #[test]
    fn a_start_command_splits_into_the_arguments_it_was_given() {
        // As tmux 3.3a printed `#{pane_start_command}` for the arguments below.
        let printed: &[u8] = b"sh -c \"sleep 100\" \"a \\\\ b\" 'q\"x' \"p q\" '' \\~h \"x'y\" \"l;\" n\\nl \"\xc3\xa9#{x}\\$H\" \"a\\tb c\" \\'";
        assert_eq!(
            split_command(printed).unwrap(),
            [
                "sh",
                "-c",
                "sleep 100",
                "a \\ b",
                "q\"x",
                "p q",
                "",
                "~h",
                "x'y",
                "l;",
                "n\nl",
                "\u{e9}#{x}$H",
                "a\tb c",
                "'"
            ]
        );
        assert_eq!(
            split_command(b"\"sleep 100 # x\"").unwrap(),
            ["sleep 100 # x"]
        );
        assert!(split_command(b"").unwrap().is_empty());
        assert!(split_command(b"\"open").is_err());
    }

    #[test]
    fn reads_every_quoting_form_tmux_writes() {
        // Lines as tmux 3.3a printed them for the values on the right.
        let cases: [(&[u8], &str); 8] = [
            (b"@v plain", "plain"),
            (b"@v \"it's\"", "it's"),
            (b"@v \\~home", "~home"),
            (b"@v ''", ""),
            (b"@v \"a;b\"", "a;b"),
            (b"@v \"esc\\033[0m bell\\a del\\177\"", "esc\x1b[0m bell\x07 del\x7f"),
            (b"@v \"x'y\\\"z\"", "x'y\"z"),
            (
                b"@x-goal \"fix \\\"the\\\" bug\\n%end 1 2 1\\n\\$HOME #{x} tab\\there \xc3\xa9 \\\\ end\"",
                "fix \"the\" bug\n%end 1 2 1\n$HOME #{x} tab\there é \\ end",
            ),
        ];
        for (line, value) in cases {
            let (_, parsed) = parse_option_line(line).unwrap();
            assert_eq!(parsed, value, "{}", String::from_utf8_lossy(line));
        }
        // Invalid UTF-8 (`\377\376`) decodes lossily rather than failing.
        let (_, parsed) = parse_option_line(b"@v \"\\377\\376 bad\"").unwrap();
        assert_eq!(parsed, "\u{fffd}\u{fffd} bad");
    }

    #[test]
    fn keeps_only_the_prefix_and_rejects_broken_lines() {
        let lines: [&[u8]; 3] = [b"@x-group build", b"status on", b"@other x"];
        let options = parse_options(lines, "@x-").unwrap();
        assert_eq!(options.len(), 1);
        assert_eq!(options["@x-group"], "build");
        assert!(parse_option_line(b"@v \"unclosed").is_err());
        assert!(
            parse_option_line(b"@v \"\\9\"").is_ok(),
            "an unknown escape is the character"
        );
        assert!(parse_option_line(b"@novalue").is_err());
    }
}
