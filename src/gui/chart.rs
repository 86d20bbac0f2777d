//! Backup size and duration over time: two plots, one above the other,
//! each with its own axis and unit, sharing one time axis whose marks fall
//! on calendar steps (minutes, hours, days, weeks, months, years) chosen
//! for the visible span, so its labels stay readable from 3 runs to 3,000.
//! Failed runs show as red marks on the time line.

use chrono::{DateTime, Datelike, Duration, Local, NaiveDate, TimeZone, Timelike};
use eframe::egui::{self, Ui};
use egui_plot::{GridInput, GridMark, Line, Plot, Points};
use persnap::history::{Outcome, Run};
use persnap::units::LocalTime;

use super::widgets::{GREEN, RED};

/// Durations: neither the green of sizes nor the red of failures.
const BLUE: egui::Color32 = egui::Color32::from_rgb(0x3b, 0x7d, 0xd8);

const MINUTE: f64 = 60.0;
const HOUR: f64 = 3600.0;
const DAY: f64 = 86_400.0;
/// Months and years as grid steps (their marks fall on the calendar).
const MONTH: f64 = 30.0 * DAY;
const YEAR: f64 = 365.0 * DAY;

/// The calendar steps marks may fall on, smallest first.
const STEPS: [f64; 16] = [
    MINUTE,
    5.0 * MINUTE,
    15.0 * MINUTE,
    30.0 * MINUTE,
    HOUR,
    3.0 * HOUR,
    6.0 * HOUR,
    12.0 * HOUR,
    DAY,
    2.0 * DAY,
    7.0 * DAY,
    14.0 * DAY,
    MONTH,
    3.0 * MONTH,
    YEAR,
    5.0 * YEAR,
];

/// Grid marks between `input.bounds` (seconds since 1970, UTC) on the
/// calendar steps at least `input.base_step_size` apart; each time appears
/// once, with the largest step it belongs to, and none crowds a mark of a
/// larger step.
pub fn time_marks(input: GridInput) -> Vec<GridMark> {
    let (start, end) = input.bounds;
    if !start.is_finite() || !end.is_finite() || end <= start {
        return Vec::new();
    }
    let mut marks: Vec<GridMark> = Vec::new();
    for &step in STEPS.iter().rev() {
        if step < input.base_step_size || (end - start) / step > 400.0 {
            continue;
        }
        for value in calendar(start, end, step) {
            // Weeks and months do not divide each other: a Monday next to
            // the first of a month would crowd its label.
            if !marks.iter().any(|m| (m.value - value).abs() < step * 0.6) {
                marks.push(GridMark {
                    value,
                    step_size: step,
                });
            }
        }
    }
    marks
}

/// The local times between `start` and `end` that fall on `step`:
/// multiples of it from local midnight up to a day, Mondays for weeks, the
/// first of months, quarters and years.
fn calendar(start: f64, end: f64, step: f64) -> Vec<f64> {
    let Some(first) = local(start) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut push = |t: DateTime<Local>| {
        let v = t.timestamp() as f64;
        if v >= start && v <= end {
            out.push(v);
        }
    };
    if step >= MONTH {
        let months = if step >= 5.0 * YEAR {
            60
        } else if step >= YEAR {
            12
        } else {
            (step / MONTH).round() as u32
        };
        let total = first.year() * 12 + first.month0() as i32;
        let mut m = total - total.rem_euclid(months as i32);
        while let Some(t) = midnight(NaiveDate::from_ymd_opt(
            m.div_euclid(12),
            m.rem_euclid(12) as u32 + 1,
            1,
        )) {
            if t.timestamp() as f64 > end {
                break;
            }
            push(t);
            m += months as i32;
        }
    } else if step >= 7.0 * DAY {
        let date = first.date_naive();
        let mut d = date - Duration::days(date.weekday().num_days_from_monday() as i64);
        let days = (step / DAY).round() as i64;
        while let Some(t) = midnight(Some(d)) {
            if t.timestamp() as f64 > end {
                break;
            }
            push(t);
            d += Duration::days(days);
        }
    } else if step >= DAY {
        // Every day, or every other day of the month (1, 3, …, 29), so
        // that the marks stay put while the view moves.
        let days = (step / DAY).round() as u32;
        let mut d = first.date_naive();
        while let Some(t) = midnight(Some(d)) {
            if t.timestamp() as f64 > end {
                break;
            }
            if d.day0() % days == 0 && d.day0() + days <= 30 {
                push(t);
            }
            d += Duration::days(1);
        }
    } else {
        let Some(day) = midnight(Some(first.date_naive())) else {
            return out;
        };
        let step_s = step as i64;
        let into = first.timestamp() - day.timestamp();
        let mut t = day.timestamp() + into - into.rem_euclid(step_s);
        while (t as f64) <= end {
            if let Some(at) = Local.timestamp_opt(t, 0).single() {
                push(at);
            }
            t += step_s;
        }
    }
    out
}

fn local(seconds: f64) -> Option<DateTime<Local>> {
    Local.timestamp_opt(seconds.floor() as i64, 0).single()
}

fn midnight(date: Option<NaiveDate>) -> Option<DateTime<Local>> {
    Local
        .from_local_datetime(&date?.and_hms_opt(0, 0, 0)?)
        .earliest()
}

/// Marks on amounts at 1, 2 or 5 times a power of ten (whichever is the
/// first at least `input.base_step_size` apart), with every fifth or tenth
/// stronger: more labels than egui's powers of ten on a short plot.
pub fn amount_marks(input: GridInput) -> Vec<GridMark> {
    let (lo, hi) = input.bounds;
    if !lo.is_finite() || !hi.is_finite() || hi <= lo || input.base_step_size <= 0.0 {
        return Vec::new();
    }
    let power = 10f64.powf(input.base_step_size.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|f| f * power)
        .find(|s| *s >= input.base_step_size)
        .unwrap_or(10.0 * power);
    if (hi - lo) / step > 1000.0 {
        return Vec::new();
    }
    let major = step * 5.0;
    let mut v = (lo / step).ceil() * step;
    let mut marks = Vec::new();
    while v <= hi {
        let on_major = ((v / major).round() * major - v).abs() < step * 1e-6;
        marks.push(GridMark {
            // Never "-0".
            value: v + 0.0,
            step_size: if on_major { major } else { step },
        });
        v += step;
    }
    marks
}

/// A time axis label for `mark`, as precise as its step needs.
pub fn time_label(mark: GridMark) -> String {
    let Some(t) = local(mark.value) else {
        return String::new();
    };
    if mark.step_size >= YEAR {
        t.format("%Y").to_string()
    } else if mark.step_size >= MONTH {
        if t.month() == 1 {
            t.format("%b %Y").to_string()
        } else {
            t.format("%b").to_string()
        }
    } else if mark.step_size >= DAY || (t.hour() == 0 && t.minute() == 0) {
        t.format("%-d %b").to_string()
    } else {
        t.format("%H:%M").to_string()
    }
}

/// How to show an amount on an axis: the divisor and its unit.
fn byte_unit(max: f64) -> (f64, &'static str) {
    match max {
        m if m >= (1u64 << 30) as f64 => ((1u64 << 30) as f64, "GiB"),
        m if m >= (1u64 << 20) as f64 => ((1u64 << 20) as f64, "MiB"),
        m if m >= 1024.0 => (1024.0, "KiB"),
        _ => (1.0, "bytes"),
    }
}

fn time_unit(max: f64) -> (f64, &'static str) {
    match max {
        m if m >= 2.0 * HOUR => (HOUR, "hours"),
        m if m >= 2.0 * MINUTE => (MINUTE, "minutes"),
        _ => (1.0, "seconds"),
    }
}

/// The two plots for `runs` (any order), filling `height` together.
pub fn size_and_duration(ui: &mut Ui, id: &str, runs: &[&Run], height: f32) {
    let done: Vec<&&Run> = {
        let mut d: Vec<&&Run> = runs
            .iter()
            .filter(|r| r.outcome == Outcome::Completed)
            .collect();
        d.sort_by_key(|r| r.started);
        d
    };
    let failed: Vec<f64> = runs
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Failed { .. } | Outcome::Interrupted))
        .map(|r| r.started.timestamp() as f64)
        .collect();
    if done.is_empty() && failed.is_empty() {
        ui.label("The chart appears after the first backup.");
        return;
    }
    let at = |r: &Run| r.started.timestamp() as f64;
    let (bytes_div, bytes_unit) =
        byte_unit(done.iter().map(|r| r.bytes as f64).fold(0.0, f64::max));
    let (secs_div, secs_unit) = time_unit(
        done.iter()
            .map(|r| r.duration_secs.unwrap_or(0.0))
            .fold(0.0, f64::max),
    );
    let link = ui.make_persistent_id((id, "time"));
    // A time span wide enough for labels, also around a single run.
    let times: Vec<f64> = runs.iter().map(|r| at(r)).collect();
    let (first, last) = times
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), t| (lo.min(*t), hi.max(*t)));
    let pad = ((last - first) * 0.04).max(30.0 * MINUTE);
    let each = ((height - 8.0) / 2.0).max(90.0);
    let series = |value: &dyn Fn(&Run) -> f64| -> Vec<[f64; 2]> {
        done.iter().map(|r| [at(r), value(r)]).collect()
    };
    let plot = |name: &str, unit: &str| {
        Plot::new((id, name))
            .height(each)
            .link_axis(link, [true, false])
            .x_grid_spacer(time_marks)
            .x_axis_formatter(|mark, _| time_label(mark))
            .y_grid_spacer(amount_marks)
            .y_axis_label(format!("{name} ({unit})"))
            .y_axis_min_width(48.0)
            .include_y(0.0)
            .include_x(first - pad)
            .include_x(last + pad)
            .allow_scroll(false)
            .label_formatter({
                let unit = unit.to_owned();
                move |p| {
                    let (egui_plot::HoverPosition::NearDataPoint { position, .. }
                    | egui_plot::HoverPosition::Elsewhere { position }) = p;
                    let t = local(position.x)?;
                    Some(format!("{}\n{:.1} {unit}", t.local_minute(), position.y))
                }
            })
    };
    let size = series(&|r| r.bytes as f64 / bytes_div);
    let failures: Vec<[f64; 2]> = failed.iter().map(|t| [*t, 0.0]).collect();
    plot("Size", bytes_unit).show(ui, |p| {
        p.line(Line::new("Size", size.clone()).color(GREEN));
        p.points(Points::new("Size", size).color(GREEN).radius(2.0));
        p.points(
            Points::new("Failed", failures.clone())
                .color(RED)
                .radius(4.0),
        );
    });
    let secs = series(&|r| r.duration_secs.unwrap_or(0.0) / secs_div);
    plot("Duration", secs_unit).show(ui, |p| {
        p.line(Line::new("Duration", secs.clone()).color(BLUE));
        p.points(Points::new("Duration", secs).color(BLUE).radius(2.0));
        p.points(Points::new("Failed", failures).color(RED).radius(4.0));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The labels egui would paint for `marks` on an axis `width` points
    /// wide: those whose step leaves room for the text (8 points a
    /// character at most, generously).
    fn painted(start: f64, end: f64, width: f64) -> Vec<String> {
        let per_point = (end - start) / width;
        let marks = time_marks(GridInput {
            bounds: (start, end),
            base_step_size: per_point * 8.0,
        });
        let mut shown: Vec<(f64, String)> = marks
            .into_iter()
            .filter_map(|m| {
                let label = time_label(m);
                let room = m.step_size / per_point;
                (room >= 60.0 && room >= 8.0 * label.len() as f64).then_some((m.value, label))
            })
            .collect();
        shown.sort_by(|a, b| a.0.total_cmp(&b.0));
        // No two painted labels overlap.
        for pair in shown.windows(2) {
            let gap = (pair[1].0 - pair[0].0) / per_point;
            let need = 4.0 * (pair[0].1.len() + pair[1].1.len()) as f64;
            assert!(
                gap >= need,
                "{:?} and {:?} overlap ({gap:.0} points)",
                pair[0],
                pair[1]
            );
        }
        shown.into_iter().map(|(_, l)| l).collect()
    }

    fn at(y: i32, m: u32, d: u32, h: u32) -> f64 {
        Local
            .with_ymd_and_hms(y, m, d, h, 0, 0)
            .unwrap()
            .timestamp() as f64
    }

    #[test]
    fn an_afternoon_is_labelled_in_hours() {
        let labels = painted(at(2026, 11, 23, 12), at(2026, 11, 23, 18), 800.0);
        assert!(labels.contains(&"15:00".to_owned()), "{labels:?}");
        assert!((3..=14).contains(&labels.len()), "{labels:?}");
    }

    #[test]
    fn a_month_is_labelled_in_days() {
        let labels = painted(at(2026, 10, 28, 0), at(2026, 11, 27, 0), 800.0);
        assert!(labels.contains(&"Nov".to_owned()), "{labels:?}");
        assert!(labels.contains(&"9 Nov".to_owned()), "{labels:?}");
        assert!(labels.iter().all(|l| !l.contains(':')), "{labels:?}");
        assert!((4..=16).contains(&labels.len()), "{labels:?}");
    }

    #[test]
    fn eight_years_are_labelled_in_years_or_months() {
        let labels = painted(at(2018, 11, 1, 0), at(2026, 11, 1, 0), 800.0);
        assert!(
            labels.contains(&"2022".to_owned()) || labels.contains(&"Jan 2022".to_owned()),
            "{labels:?}"
        );
        assert!((4..=16).contains(&labels.len()), "{labels:?}");
    }

    #[test]
    fn marks_fall_on_the_calendar() {
        let marks = time_marks(GridInput {
            bounds: (at(2026, 1, 10, 0), at(2026, 6, 10, 0)),
            base_step_size: 20.0 * DAY,
        });
        for m in marks.iter().filter(|m| m.step_size >= MONTH) {
            let t = local(m.value).unwrap();
            assert_eq!((t.day(), t.hour(), t.minute()), (1, 0, 0), "{t}");
        }
        assert!(marks.iter().any(|m| m.step_size == MONTH));
    }

    #[test]
    fn amounts_are_marked_at_one_two_or_five() {
        let marks = amount_marks(GridInput {
            bounds: (0.0, 41.0),
            base_step_size: 8.0,
        });
        let values: Vec<f64> = marks.iter().map(|m| m.value).collect();
        assert_eq!(values, [0.0, 10.0, 20.0, 30.0, 40.0]);
        assert_eq!(marks[0].step_size, 50.0);
        assert_eq!(marks[1].step_size, 10.0);
    }

    #[test]
    fn an_empty_or_backward_span_has_no_marks() {
        assert!(
            time_marks(GridInput {
                bounds: (5.0, 5.0),
                base_step_size: 1.0
            })
            .is_empty()
        );
        assert!(
            time_marks(GridInput {
                bounds: (f64::NAN, 5.0),
                base_step_size: 1.0
            })
            .is_empty()
        );
    }
}
