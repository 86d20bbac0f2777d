//! Frames on the wire: one line of JSON each, versioned and bounded.

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

use super::*;

/// One frame on the wire: the version plus the payload, flattened.
#[derive(Debug, Serialize, Deserialize)]
pub struct Frame<T> {
    pub version: u32,
    #[serde(flatten)]
    pub body: T,
}

/// Why a frame was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("the frame is larger than {MAX_FRAME} bytes")]
    TooLarge,
    #[error("the frame is not valid JSON for this protocol: {0}")]
    BadJson(String),
    #[error(
        "protocol version mismatch: got {got}, this persnap speaks {PROTOCOL_VERSION}; install the same persnap version for the app and the helper"
    )]
    Version { got: u64 },
    #[error("the stream ended before a frame arrived")]
    Eof,
    #[error("reading the frame failed: {0}")]
    Io(String),
}

/// Write one frame (a line of JSON).
pub fn write_frame<T: Serialize>(out: &mut impl Write, body: &T) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(&Frame {
        version: PROTOCOL_VERSION,
        body,
    })
    .expect("frames serialize");
    line.push(b'\n');
    out.write_all(&line)?;
    out.flush()
}

/// Read one line, refusing lines over [`MAX_FRAME`] without buffering them.
pub fn read_line(input: &mut impl BufRead) -> Result<Vec<u8>, FrameError> {
    let mut line = Vec::new();
    loop {
        let buf = input
            .fill_buf()
            .map_err(|e| FrameError::Io(e.to_string()))?;
        if buf.is_empty() {
            return if line.is_empty() {
                Err(FrameError::Eof)
            } else {
                Ok(line)
            };
        }
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..=i], true),
            None => (buf, false),
        };
        if line.len() + chunk.len() > MAX_FRAME {
            return Err(FrameError::TooLarge);
        }
        line.extend_from_slice(chunk);
        let n = chunk.len();
        input.consume(n);
        if done {
            return Ok(line);
        }
    }
}

/// Parse a frame: size, JSON, version, then the payload.
pub fn parse_frame<T: serde::de::DeserializeOwned>(line: &[u8]) -> Result<T, FrameError> {
    if line.len() > MAX_FRAME {
        return Err(FrameError::TooLarge);
    }
    let value: serde_json::Value =
        serde_json::from_slice(line).map_err(|e| FrameError::BadJson(e.to_string()))?;
    let got = value
        .get("version")
        .and_then(|v| v.as_u64())
        .ok_or_else(|| FrameError::BadJson("no version field".into()))?;
    if got != u64::from(PROTOCOL_VERSION) {
        return Err(FrameError::Version { got });
    }
    let mut value = value;
    value
        .as_object_mut()
        .expect("checked object")
        .remove("version");
    serde_json::from_value(value).map_err(|e| FrameError::BadJson(e.to_string()))
}

/// Read and parse one frame.
pub fn read_frame<T: serde::de::DeserializeOwned>(
    input: &mut impl BufRead,
) -> Result<T, FrameError> {
    parse_frame(&read_line(input)?)
}
