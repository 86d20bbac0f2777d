//! How hard a backup may use the disk, so that it does not stall the
//! correlator's commits.
//!
//! On a disk the database shares, a backup's reads and writes queue in
//! front of the correlator's fsyncs: copying flat out delayed commits by a
//! third of a second in measurements, just as `cp` from a snapshot does.
//! A gentle backup ([`Pace::Gentle`]) does three things instead:
//!
//! - **Small steps, one at a time on its way to the disk.** The copy reads
//!   and writes one step (64 KiB to 8 MiB), starts writing it out, and
//!   before the next step goes out waits until this one is on the disk —
//!   its own small sync. A commit waits behind at most one step, never
//!   behind a queue of megabytes of dirty pages.
//! - **A share of the disk's time.** After each step the copy rests in
//!   proportion to how long the step's I/O took: at a share of 60 %, a step
//!   that kept the disk busy 6 ms is followed by 4 ms of rest, in which the
//!   correlator has the disk to itself.
//! - **Adapting to what the disk shows.** The time per byte of each step's
//!   sync is compared with the best seen lately. When it rises, someone
//!   else (the correlator) is using the disk: the share drops at once and
//!   comes back step by step, as TCP's congestion control does. Steps are
//!   sized to take a few milliseconds at the disk's speed, so a slow disk
//!   gets smaller steps rather than longer stalls.
//!
//! Reads are paced by the same rests (a read that came from memory took
//! no time and earns no rest); verification's reads count too.
//! [`Pace::Fast`] skips all of this: writes go behind in 8 MiB batches
//! and nothing rests. The [`Pacer`] here is only the arithmetic; `copy`
//! and `verify` time the I/O and sleep.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How hard a backup may use the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Pace {
    /// Small steps, each synced, and rests: at most [`GENTLE_SHARE`] % of
    /// the disk's time, less when the correlator needs the disk.
    #[default]
    Gentle,
    /// As fast as the disk goes.
    Fast,
    /// Gentle, at most this share (percent, 20–100) of the disk's time:
    /// for measuring the curve of stall against time; not offered in the
    /// app.
    Share(u8),
}

/// The share of the disk's time a gentle backup takes at most, in
/// percent: chosen from the measured curve (docs/BENCHMARKS.md).
pub const GENTLE_SHARE: u8 = 60;

impl Pace {
    /// Every choice the app offers, in order.
    pub const OFFERED: [Pace; 2] = [Pace::Gentle, Pace::Fast];

    /// In words, for the app, the plan and the history.
    pub fn label(self) -> String {
        match self {
            Pace::Gentle => "gentle".into(),
            Pace::Fast => "as fast as possible".into(),
            Pace::Share(p) => format!("gentle, at most {p} % of the disk's time"),
        }
    }

    /// How a backup at this pace copies, in the words of a plan or a
    /// schedule's summary ("Copy 2 files from the snapshot, gently (…)").
    pub fn manner(self) -> String {
        match self {
            Pace::Gentle => {
                "gently (in small steps, leaving the disk to the correlator in between)".into()
            }
            Pace::Fast => "as fast as the disk goes".into(),
            Pace::Share(p) => {
                format!("gently (in small steps, using at most {p} % of the disk's time)")
            }
        }
    }

    /// What it means for the correlator, in a sentence.
    pub fn explain(self) -> &'static str {
        match self {
            Pace::Gentle | Pace::Share(_) => {
                "Copies in small steps and leaves the disk to the correlator in between, so its commits wait far less; a backup takes up to twice as long."
            }
            Pace::Fast => {
                "Uses the disk flat out; on a disk the database shares, the correlator's commits may wait while the backup copies."
            }
        }
    }

    /// The most of the disk's time it takes, as a fraction; `None`: all.
    fn share(self) -> Option<f64> {
        match self {
            Pace::Gentle => Some(f64::from(GENTLE_SHARE) / 100.0),
            Pace::Fast => None,
            Pace::Share(p) => Some(f64::from(p.clamp(20, 100)) / 100.0),
        }
    }
}

impl std::fmt::Display for Pace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pace::Gentle => f.write_str("gentle"),
            Pace::Fast => f.write_str("fast"),
            Pace::Share(p) => write!(f, "{p}%"),
        }
    }
}

impl std::str::FromStr for Pace {
    type Err = String;
    fn from_str(s: &str) -> Result<Pace, String> {
        let s = s.trim();
        match s.to_ascii_lowercase().as_str() {
            "gentle" => return Ok(Pace::Gentle),
            "fast" => return Ok(Pace::Fast),
            _ => {}
        }
        s.strip_suffix('%')
            .unwrap_or(s)
            .trim()
            .parse::<u8>()
            .ok()
            .filter(|p| (20..=100).contains(p))
            .map(Pace::Share)
            .ok_or_else(|| {
                format!("unknown backup speed {s:?}; use gentle or fast (or a share of the disk's time, 20% to 100%)")
            })
    }
}

impl From<Pace> for String {
    fn from(p: Pace) -> String {
        p.to_string()
    }
}

impl TryFrom<String> for Pace {
    type Error = String;
    fn try_from(s: String) -> Result<Pace, String> {
        s.parse()
    }
}

/// What a step took: bytes read and written, and the time spent in the
/// reads, the writes and the step's sync.
#[derive(Debug, Clone, Copy, Default)]
pub struct Step {
    pub read: u64,
    pub read_time: Duration,
    pub written: u64,
    /// Writing and syncing the step.
    pub write_time: Duration,
}

/// The time a step should keep the disk busy: short enough that a commit
/// waiting behind one is not felt, long enough that the syncs cost little.
const STEP_TIME: f64 = 0.004;
/// The smallest and largest step, in bytes.
const MIN_STEP: u64 = 64 << 10;
const MAX_STEP: u64 = 8 << 20;
/// The bytes written between write-behind hints when going fast.
pub const FAST_STEP: u64 = 8 << 20;
/// Never less than this share, so a backup always ends.
const MIN_SHARE: f64 = 0.05;
/// Weight of the newest step in the recent time per byte (a few steps:
/// one slow sync, the disk's own hiccup, does not count alone), which
/// sizes the steps.
const RECENT: f64 = 0.3;
/// Weight of the newest step in the typical time per byte (some dozens of
/// steps), which the recent one is compared with.
const TYPICAL: f64 = 0.03;
/// Recent syncs this many times slower per byte than typical ones mean
/// someone else is using the disk meanwhile: the share stops growing;
/// twice this, the share shrinks by a third each step.
const BUSY: f64 = 1.3;
/// No rest longer than this at once (cancel stays prompt).
const MAX_REST: Duration = Duration::from_millis(500);

/// The pacing arithmetic of one backup: how big the next step is and how
/// long to rest after each. Pure: it is told what each step took.
#[derive(Debug, Clone)]
pub struct Pacer {
    share: Option<f64>,
    /// The share it takes now (at most `share`).
    duty: f64,
    /// Recent seconds per byte of reads and of synced writes.
    recent_read: Option<f64>,
    recent_write: Option<f64>,
    /// Typical seconds per byte of synced writes.
    typical_write: Option<f64>,
    step: u64,
    rested: Duration,
}

impl Pacer {
    pub fn new(pace: Pace) -> Pacer {
        let share = pace.share();
        Pacer {
            share,
            duty: share.unwrap_or(1.0),
            recent_read: None,
            recent_write: None,
            typical_write: None,
            // Gentle starts small and grows to the disk's speed.
            step: if share.is_some() { MIN_STEP } else { FAST_STEP },
            rested: Duration::ZERO,
        }
    }

    /// No pacing (restores, tools).
    pub fn fast() -> Pacer {
        Pacer::new(Pace::Fast)
    }

    /// Whether steps are synced and rested after (gentle).
    pub fn is_paced(&self) -> bool {
        self.share.is_some()
    }

    /// Bytes to read (and write) before the next sync and rest.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// The share of the disk's time taken now, as a fraction.
    pub fn duty(&self) -> f64 {
        self.duty
    }

    /// Time rested so far.
    pub fn rested(&self) -> Duration {
        self.rested
    }

    /// Learn from a finished step; how long to rest before the next.
    pub fn settle(&mut self, step: Step) -> Duration {
        let Some(share) = self.share else {
            return Duration::ZERO;
        };
        let busy = step.read_time + step.write_time;
        // Too little to tell anything from (the tail of a file).
        let per_byte = |bytes: u64, time: Duration| {
            (bytes >= MIN_STEP / 2).then(|| time.as_secs_f64() / bytes as f64)
        };
        let mix = |average: &mut Option<f64>, now: Option<f64>, weight: f64| {
            if let Some(now) = now {
                *average = Some(average.map_or(now, |a| a + weight * (now - a)));
            }
        };
        let (read, write) = (
            per_byte(step.read, step.read_time),
            per_byte(step.written, step.write_time),
        );
        mix(&mut self.recent_read, read, RECENT);
        mix(&mut self.recent_write, write, RECENT);
        mix(&mut self.typical_write, write, TYPICAL);
        // Only synced writes tell congestion: a read that came from
        // memory is no baseline for one that went to the disk.
        let slower = write
            .and(self.recent_write.zip(self.typical_write))
            .map(|(recent, typical)| recent / typical.max(f64::MIN_POSITIVE));
        match slower {
            Some(s) if s > 2.0 * BUSY => {
                self.duty *= 2.0 / 3.0;
            }
            // Somewhat slower: the correlator's commits interleave; hold.
            Some(s) if s > BUSY => {}
            _ => self.duty += 0.1 * share,
        }
        self.duty = self.duty.clamp(MIN_SHARE.min(share), share);
        let per_byte = self.recent_read.unwrap_or(0.0) + self.recent_write.unwrap_or(0.0);
        if per_byte > 0.0 {
            let bytes = (STEP_TIME / per_byte) as u64;
            self.step = bytes.clamp(MIN_STEP, MAX_STEP) & !(4096 - 1);
        }
        let rest = busy.mul_f64((1.0 - self.duty) / self.duty).min(MAX_REST);
        self.rested += rest;
        rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    #[test]
    fn reads_and_writes_the_setting() {
        for (text, pace) in [
            ("gentle", Pace::Gentle),
            ("fast", Pace::Fast),
            ("Fast", Pace::Fast),
            ("40%", Pace::Share(40)),
            ("100", Pace::Share(100)),
        ] {
            assert_eq!(text.parse::<Pace>(), Ok(pace));
        }
        for bad in ["", "slow", "4%", "19%", "101%", "-5"] {
            assert!(bad.parse::<Pace>().is_err(), "{bad}");
        }
        assert_eq!(Pace::default(), Pace::Gentle);
        assert_eq!(serde_json::to_string(&Pace::Share(40)).unwrap(), "\"40%\"");
        assert_eq!(
            serde_json::from_str::<Pace>("\"fast\"").unwrap(),
            Pace::Fast
        );
    }

    /// A disk that serves one queue in order at `rate` bytes a second,
    /// plus `flush` for every fsync (a cache flush): what one queued byte
    /// costs everyone behind it.
    struct Disk {
        rate: f64,
        flush: f64,
        queue: VecDeque<(Who, f64)>,
    }

    #[derive(Clone, Copy, PartialEq, Debug)]
    enum Who {
        Correlator,
        Backup,
        Neighbour,
    }

    /// What a run of the simulation showed.
    #[derive(Debug)]
    struct Outcome {
        /// The correlator's commits, worst and all, in seconds.
        worst_commit: f64,
        /// When each commit ended, and how long it took.
        commits: Vec<(f64, f64)>,
        /// How long the backup took.
        seconds: f64,
        steps: Vec<u64>,
        duties: Vec<(f64, f64)>,
    }

    const TICK: f64 = 20e-6;

    /// Back up `bytes` paced by `pace` on `disk`, while a correlator
    /// commits every 10 ms (three synced 8 KiB writes, one after the
    /// other, as a rollback-journal commit does); `slow_after` (seconds)
    /// divides the disk's speed by 4 from then on; `neighbour` keeps the
    /// disk busy from and to the given times with a second writer.
    fn simulate(
        pace: Option<Pace>,
        bytes: u64,
        mut disk: Disk,
        slow_after: Option<f64>,
        neighbour: Option<(f64, f64)>,
    ) -> Outcome {
        let mut pacer = pace.map(Pacer::new);
        let mut t = 0.0f64;
        let mut commits = Vec::new();
        // The correlator: when its commit started, and syncs left.
        let mut commit: Option<(f64, u32)> = None;
        let mut next_commit = 0.0;
        let mut copied = 0u64;
        // The backup's state: resting until, or waiting for its queued
        // bytes, with the step's start.
        let mut rest_until = 0.0;
        let mut in_step: Option<(f64, f64, u64)> = None; // (start, read done at, bytes)
        let mut reading = false;
        let mut steps = Vec::new();
        let mut duties = Vec::new();
        let started = 0.0;
        let end;
        loop {
            if slow_after.is_some_and(|s| t >= s) {
                disk.rate = disk.rate.min(50e6);
            }
            // The correlator.
            if commit.is_none() && t >= next_commit {
                commit = Some((t, 3));
                disk.queue
                    .push_back((Who::Correlator, 8192.0 + disk.rate * disk.flush));
                next_commit += 0.010;
            }
            // A neighbour writing flat out.
            if let Some((from, to)) = neighbour
                && t >= from
                && t < to
                && !disk.queue.iter().any(|(w, _)| *w == Who::Neighbour)
            {
                disk.queue.push_back((Who::Neighbour, 1_048_576.0));
            }
            // The backup.
            let backup_queued = disk.queue.iter().any(|(w, _)| *w == Who::Backup);
            match &mut pacer {
                None => {
                    // As `cp` and fast pacing do: keep 16 MiB queued.
                    let queued: f64 = disk
                        .queue
                        .iter()
                        .filter(|(w, _)| *w == Who::Backup)
                        .map(|(_, b)| b)
                        .sum();
                    if copied < bytes && queued < 16e6 {
                        let n = (bytes - copied).min(1 << 20);
                        // Read and write: two bytes of disk work a byte.
                        disk.queue.push_back((Who::Backup, 2.0 * n as f64));
                        copied += n;
                    }
                    if copied >= bytes && !backup_queued {
                        end = t;
                        break;
                    }
                }
                Some(pacer) => {
                    if let Some((start, read_done, n)) = in_step {
                        if !backup_queued {
                            if reading {
                                // The read is in; queue the write and its sync.
                                reading = false;
                                in_step = Some((start, t, n));
                                // (sync_file_range: written and waited
                                // for, no cache flush.)
                                disk.queue.push_back((Who::Backup, n as f64));
                            } else {
                                copied += n;
                                let rest = pacer.settle(Step {
                                    read: n,
                                    read_time: Duration::from_secs_f64(read_done - start),
                                    written: n,
                                    write_time: Duration::from_secs_f64(t - read_done),
                                });
                                steps.push(pacer.step());
                                duties.push((t, pacer.duty()));
                                rest_until = t + rest.as_secs_f64();
                                in_step = None;
                            }
                        }
                    } else if copied >= bytes {
                        end = t;
                        break;
                    } else if t >= rest_until {
                        let n = pacer.step().min(bytes - copied);
                        in_step = Some((t, t, n));
                        reading = true;
                        disk.queue.push_back((Who::Backup, n as f64));
                    }
                }
            }
            // The disk serves the head of its queue.
            let mut budget = disk.rate * TICK;
            while budget > 0.0 {
                let Some((who, left)) = disk.queue.front_mut() else {
                    break;
                };
                let served = budget.min(*left);
                *left -= served;
                budget -= served;
                if *left <= 0.0 {
                    let who = *who;
                    disk.queue.pop_front();
                    if who == Who::Correlator {
                        let (began, syncs) = commit.take().expect("a commit is under way");
                        if syncs > 1 {
                            commit = Some((began, syncs - 1));
                            disk.queue
                                .push_back((Who::Correlator, 8192.0 + disk.rate * disk.flush));
                        } else {
                            commits.push((t + TICK, t + TICK - began));
                        }
                    }
                }
            }
            t += TICK;
            assert!(t < 600.0, "the backup ends");
        }
        Outcome {
            worst_commit: commits.iter().map(|c| c.1).fold(0.0, f64::max),
            commits,
            seconds: end - started,
            steps,
            duties,
        }
    }

    fn disk() -> Disk {
        Disk {
            rate: 200e6,
            flush: 0.001,
            queue: VecDeque::new(),
        }
    }

    const COPY: u64 = 200 << 20;

    #[test]
    fn gentle_keeps_commits_short_at_most_twice_as_slow() {
        // Idle: a commit is three syncs of a bare disk.
        let idle = 3.0 * (8192.0 / 200e6 + 0.001);
        let fast = simulate(None, COPY, disk(), None, None);
        let gentle = simulate(Some(Pace::Gentle), COPY, disk(), None, None);
        eprintln!(
            "idle worst {:.1} ms; fast: worst {:.1} ms in {:.2} s; gentle: worst {:.1} ms in {:.2} s",
            idle * 1e3,
            fast.worst_commit * 1e3,
            fast.seconds,
            gentle.worst_commit * 1e3,
            gentle.seconds
        );

        // The model tells them apart: flat out, commits wait behind the queue.
        assert!(fast.worst_commit > 10.0 * idle, "{fast:?}");
        // Gentle: each of a commit's syncs waits behind at most half a
        // step (its read or its write).
        assert!(
            gentle.worst_commit <= idle + 2.0 * STEP_TIME,
            "{:?}",
            gentle.worst_commit
        );
        // Its share of the disk's time, give or take what the correlator
        // takes (its rests count the time the step waited behind it).
        let share = f64::from(GENTLE_SHARE) / 100.0;
        assert!(
            gentle.seconds <= 1.5 * fast.seconds / share,
            "gentle {} s, fast {} s",
            gentle.seconds,
            fast.seconds
        );
        // Steps were sized to the disk: about STEP_TIME of disk work each.
        let last = *gentle.steps.last().unwrap();
        let step_time = 2.0 * last as f64 / 200e6;
        assert!(
            (STEP_TIME * 0.5..=STEP_TIME * 2.0).contains(&step_time),
            "step {last} B takes {step_time} s"
        );
    }

    #[test]
    fn a_slower_disk_gets_smaller_steps_not_longer_stalls() {
        let gentle = simulate(Some(Pace::Gentle), COPY / 4, disk(), Some(0.3), None);
        let before = gentle.steps[gentle.duties.iter().filter(|(t, _)| *t < 0.3).count() - 1];
        let after = *gentle.steps.last().unwrap();
        assert!(after * 3 <= before, "steps {before} → {after} B");
        // Once it has learnt the new speed (within some seconds).
        let idle_slow = 3.0 * (8192.0 / 50e6 + 0.001);
        let worst = gentle
            .commits
            .iter()
            .filter(|(t, _)| *t > 3.0)
            .map(|c| c.1)
            .fold(0.0, f64::max);
        assert!(worst <= idle_slow + 2.0 * STEP_TIME, "worst {worst} s");
    }

    #[test]
    fn backs_off_while_someone_else_uses_the_disk_then_returns() {
        let gentle = simulate(Some(Pace::Gentle), COPY, disk(), None, Some((0.5, 1.5)));
        let share = f64::from(GENTLE_SHARE) / 100.0;
        let during: Vec<f64> = gentle
            .duties
            .iter()
            .filter(|(t, _)| (0.8..1.5).contains(t))
            .map(|(_, d)| *d)
            .collect();
        let lowest = during.iter().copied().fold(1.0, f64::min);
        assert!(lowest <= share / 2.0, "lowest share while busy: {lowest}");
        let last = gentle.duties.last().unwrap().1;
        assert!((last - share).abs() < 1e-9, "back to {share}: {last}");
    }

    #[test]
    fn fast_never_rests_and_memory_reads_earn_no_rest() {
        let mut fast = Pacer::fast();
        assert!(!fast.is_paced());
        let step = Step {
            read: 8 << 20,
            read_time: Duration::from_millis(40),
            written: 8 << 20,
            write_time: Duration::from_millis(40),
        };
        assert_eq!(fast.settle(step), Duration::ZERO);
        let mut gentle = Pacer::new(Pace::Gentle);
        let cached = Step {
            read: 1 << 20,
            read_time: Duration::ZERO,
            written: 0,
            write_time: Duration::ZERO,
        };
        assert_eq!(gentle.settle(cached), Duration::ZERO);
        // 60 %: 6 ms busy, 4 ms rest.
        let mut gentle = Pacer::new(Pace::Share(60));
        let rest = gentle.settle(Step {
            read: 1 << 20,
            read_time: Duration::from_millis(3),
            written: 1 << 20,
            write_time: Duration::from_millis(3),
        });
        assert!((rest.as_secs_f64() - 0.004).abs() < 1e-4, "{rest:?}");
    }
}
