//! Human-readable sizes and durations, shared by the CLI and the GUI.

use std::time::Duration;

/// `1.5 GiB`, `512 B`: binary units, one decimal from KiB up.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `0.4 s`, `12 s`, `3 min 05 s`, `2 h 01 min`.
pub fn duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    match d.as_secs() {
        0..10 => format!("{secs:.1} s"),
        10..60 => format!("{} s", d.as_secs()),
        60..3600 => format!("{} min {:02} s", d.as_secs() / 60, d.as_secs() % 60),
        s => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
    }
}

/// Parse `512M`, `1G`, `1.5GiB`, `2048` (bytes); binary units.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size; write e.g. 512M or 2G"))?;
    let shift = match unit
        .trim()
        .to_ascii_lowercase()
        .trim_end_matches("ib")
        .trim_end_matches('b')
    {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err(format!("unknown unit in {text:?}; use K, M, G or T")),
    };
    Ok((value * (1u64 << shift) as f64) as u64)
}

/// One way to say a moment on this machine's clock, everywhere a person
/// reads it (the app, the command line, the mail).
pub trait LocalTime {
    /// To the minute: `2026-12-07 17:09`.
    fn local_minute(&self) -> String;
    /// To the second: `2026-12-07 17:09:42`.
    fn local_second(&self) -> String;
    /// To the minute with the zone, for a reader elsewhere (mail):
    /// `2026-12-07 17:09 CET`.
    fn local_minute_zone(&self) -> String;
}

impl<Tz: chrono::TimeZone> LocalTime for chrono::DateTime<Tz> {
    fn local_minute(&self) -> String {
        self.with_timezone(&chrono::Local)
            .format("%Y-%m-%d %H:%M")
            .to_string()
    }

    fn local_second(&self) -> String {
        self.with_timezone(&chrono::Local)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    }

    fn local_minute_zone(&self) -> String {
        self.with_timezone(&chrono::Local)
            .format("%Y-%m-%d %H:%M %Z")
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_sizes_and_durations() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
        assert_eq!(duration(Duration::from_millis(400)), "0.4 s");
        assert_eq!(duration(Duration::from_secs(185)), "3 min 05 s");
        assert_eq!(duration(Duration::from_secs(7260)), "2 h 01 min");
    }

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("2048"), Ok(2048));
        assert_eq!(parse_size("2 g"), Ok(2 << 30));
        assert!(parse_size("lots").is_err() && parse_size("3X").is_err());
    }
}
