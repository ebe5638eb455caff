//! User option values survive tmux's `show-options` quoting byte for byte.

use crate::support::TmuxServer;
use tmux_agent::control::options::parse_options;

#[test]
fn show_options_round_trips_hostile_values() {
    let server = TmuxServer::start();
    let long = "é".repeat(5000);
    let values = [
        "plain",
        "a b'c\"d;e#{x}#(touch pwned)",
        "line1\nline2\n%end 1 2 1\n%exit",
        "$HOME ~ \\ {braces} \t tab",
        "\u{1b}[31mred\u{7}\u{7f}",
        "",
        " lead and trail ",
        long.as_str(),
    ];
    for (i, value) in values.iter().enumerate() {
        server.tmux(&["set-option", "-t", "base", &format!("@agent-v{i}"), value]);
    }
    let out = server
        .command()
        .args(["show-options", "-t", "base"])
        .output()
        .unwrap();
    let lines: Vec<&[u8]> = out
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let options = parse_options(lines, "@agent-").unwrap();
    for (i, value) in values.iter().enumerate() {
        assert_eq!(options[&format!("@agent-v{i}")], *value, "value {i}");
    }
}
