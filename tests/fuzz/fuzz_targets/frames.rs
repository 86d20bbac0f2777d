//! Fuzz the helper's input path: frame reading (size limit, JSON, version),
//! request validation and the level check, exactly as `persnap-helper`
//! runs them, and the frames the helper and its worker exchange.
//! Run: tests/fuzz/run.sh [SECONDS]
#![no_main]

use std::io::{BufReader, Cursor};

use libfuzzer_sys::fuzz_target;
use persnap::protocol::{self, Authority, Control, Request};
use persnap::registry::Registry;
use persnap::worker::{FromWorker, ToWorker, WorkerRequest};

fuzz_target!(|data: &[u8]| {
    let mut input = BufReader::with_capacity(64, Cursor::new(data));
    if let Ok(request) = protocol::read_frame::<Request>(&mut input) {
        // Validation only reads the filesystem (canonicalize, headers).
        let registry = Registry::at("/nonexistent/persnap-fuzz-registry");
        let _ = request.needs(&registry);
        if let Ok(mut validated) = protocol::validate(request) {
            let _ = validated.authorize(Authority::Backup, &registry);
        }
    }
    // Whatever follows the request is control frames (and, between the
    // helper and its worker, their own frames).
    while let Ok(frame) = protocol::read_line(&mut input) {
        let _ = protocol::parse_frame::<Control>(&frame);
        let _ = protocol::parse_frame::<ToWorker>(&frame);
        let _ = protocol::parse_frame::<FromWorker>(&frame);
        let _ = protocol::parse_frame::<WorkerRequest>(&frame);
    }
});
