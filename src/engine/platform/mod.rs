//! Platform: the few OS calls (one file per platform), the Windows channel
//! to the helper, external tools, atomic files and locks, sizes in words.

/// Atomic writes, run locks.
pub mod fsutil;
/// The Windows channel to the helper.
pub mod pipe;
/// The few OS calls, one file per platform.
pub mod sys;
/// Running external tools safely.
pub mod tool;
/// Sizes and durations in words.
pub mod units;
