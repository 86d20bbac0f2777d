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
}
