//! Fuzz target: the config loader must never panic on any text. It runs
//! the whole path a config file takes: TOML parsing with every problem
//! collected, the reactor settings and their checks, and `${VAR}`
//! expansion of every string.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tmux_agent::agent::settings::ReactorSettings;
use tmux_agent::config;
use tmux_agent::mcp::expand::expand;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new("config.toml");
    let (config, problems) = config::parse(file, text);
    for problem in &problems {
        // Every problem names its file and can be printed.
        assert!(problem.to_string().contains("config.toml"), "{problem}");
    }
    let _ = ReactorSettings::from_config(&config);
    let lookup = |name: &str| (name.len() % 2 == 0).then(|| name.to_uppercase());
    let _ = expand(text, &lookup);
});
