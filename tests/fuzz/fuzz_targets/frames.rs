//! Fuzz the helper's input path: frame reading (size limit, JSON, version)
//! and request validation, exactly as `persnap-helper` runs them.
//! Run: tests/fuzz/run.sh [SECONDS]
#![no_main]

use std::io::{BufReader, Cursor};

use libfuzzer_sys::fuzz_target;
use persnap::protocol::{self, Control, Request};

fuzz_target!(|data: &[u8]| {
    let mut input = BufReader::with_capacity(64, Cursor::new(data));
    if let Ok(request) = protocol::read_frame::<Request>(&mut input) {
        // Validation only reads the filesystem (canonicalize, headers).
        let _ = protocol::validate(request);
    }
    // Whatever follows the request is control frames.
    while let Ok(frame) = protocol::read_line(&mut input) {
        let _ = protocol::parse_frame::<Control>(&frame);
    }
});
