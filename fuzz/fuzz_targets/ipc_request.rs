//! Fuzz target: the daemon's IPC request parser must never panic on any
//! line, and a request it accepts must survive a round trip through its
//! JSON form unchanged (what the CLI sends is what the daemon reads). The
//! CLI's response parser gets the same bytes and the same checks.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tmux_agent::ipc::message::{Request, Response};

fuzz_target!(|line: &[u8]| {
    if let Ok(request) = Request::parse(line) {
        let json = serde_json::to_vec(&request).expect("a request serializes");
        let again = Request::parse(&json).expect("a serialized request parses");
        assert_eq!(again, request);
    }
    if let Ok(response) = serde_json::from_slice::<Response>(line) {
        let json = serde_json::to_vec(&response).expect("a response serializes");
        let again: Response = serde_json::from_slice(&json).expect("a serialized response parses");
        assert_eq!(again, response);
    }
});
