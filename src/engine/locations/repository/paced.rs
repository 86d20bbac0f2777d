//! A repository in a folder on this machine, read and written at a
//! backup's pace: each pack, index or snapshot file rustic writes (its
//! local storage fsyncs every file) and each read of one is a step of
//! [`crate::pace::Pacer`], rested after as a folder copy's steps are, so a
//! gentle backup's repository leaves the disk to the correlator too.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use rustic_core::{BytesList, FileType, Id, ReadBackend, RusticResult, WriteBackend};

use crate::pace::{Pace, Pacer, Step};

/// Storage whose reads and writes rest after each, by `pacer`.
#[derive(Debug)]
pub(super) struct Paced {
    inner: Arc<dyn WriteBackend>,
    pacer: Mutex<Pacer>,
}

impl Paced {
    /// `inner` at `pace`; `None` when there is nothing to pace (fast).
    pub(super) fn wrap(inner: Arc<dyn WriteBackend>, pace: Pace) -> Option<Arc<dyn WriteBackend>> {
        let pacer = Pacer::new(pace);
        pacer.is_paced().then(|| {
            Arc::new(Paced {
                inner,
                pacer: Mutex::new(pacer),
            }) as Arc<dyn WriteBackend>
        })
    }

    /// Rest after a step that took from `began` (many threads store at
    /// once: each rests after its own step, outside the lock).
    fn rest_after(&self, began: Instant, bytes: usize, read: bool) {
        let took = began.elapsed();
        let step = if read {
            Step {
                read: bytes as u64,
                read_time: took,
                ..Step::default()
            }
        } else {
            Step {
                written: bytes as u64,
                write_time: took,
                ..Step::default()
            }
        };
        let rest = self
            .pacer
            .lock()
            .map(|mut p| p.settle(step))
            .unwrap_or_default();
        std::thread::sleep(rest);
    }

    /// Time rested so far.
    #[cfg(test)]
    fn rested(&self) -> std::time::Duration {
        self.pacer.lock().map(|p| p.rested()).unwrap_or_default()
    }
}

impl ReadBackend for Paced {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        self.inner.list_with_size(tpe)
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<bytes::Bytes> {
        let began = Instant::now();
        let read = self.inner.read_full(tpe, id);
        self.rest_after(began, read.as_ref().map_or(0, |b| b.len()), true);
        read
    }

    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<bytes::Bytes> {
        let began = Instant::now();
        let read = self.inner.read_partial(tpe, id, cacheable, offset, length);
        self.rest_after(began, read.as_ref().map_or(0, |b| b.len()), true);
        read
    }

    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        self.inner.warmup_path(tpe, id)
    }

    fn needs_warm_up(&self) -> bool {
        self.inner.needs_warm_up()
    }

    fn warm_up(&self, tpe: FileType, id: &Id) -> RusticResult<()> {
        self.inner.warm_up(tpe, id)
    }
}

impl WriteBackend for Paced {
    fn create(&self) -> RusticResult<()> {
        self.inner.create()
    }

    fn write_bytes(
        &self,
        tpe: FileType,
        id: &Id,
        cacheable: bool,
        content: BytesList,
    ) -> RusticResult<()> {
        let (began, bytes) = (Instant::now(), content.size());
        let written = self.inner.write_bytes(tpe, id, cacheable, content);
        self.rest_after(began, bytes, false);
        written
    }

    fn remove(&self, tpe: FileType, id: &Id, cacheable: bool) -> RusticResult<()> {
        self.inner.remove(tpe, id, cacheable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A storage whose every write takes 20 ms, as a disk would.
    #[derive(Debug)]
    struct Slow;

    impl ReadBackend for Slow {
        fn location(&self) -> String {
            "slow".into()
        }
        fn list_with_size(&self, _: FileType) -> RusticResult<Vec<(Id, u32)>> {
            Ok(Vec::new())
        }
        fn read_full(&self, _: FileType, _: &Id) -> RusticResult<bytes::Bytes> {
            Ok(bytes::Bytes::new())
        }
        fn read_partial(
            &self,
            _: FileType,
            _: &Id,
            _: bool,
            _: u32,
            _: u32,
        ) -> RusticResult<bytes::Bytes> {
            Ok(bytes::Bytes::new())
        }
        fn warmup_path(&self, _: FileType, _: &Id) -> String {
            String::new()
        }
    }

    impl WriteBackend for Slow {
        fn write_bytes(&self, _: FileType, _: &Id, _: bool, _: BytesList) -> RusticResult<()> {
            std::thread::sleep(std::time::Duration::from_millis(20));
            Ok(())
        }
        fn remove(&self, _: FileType, _: &Id, _: bool) -> RusticResult<()> {
            Ok(())
        }
    }

    #[test]
    fn a_gentle_repository_rests_after_its_writes_and_a_fast_one_is_not_wrapped() {
        assert!(Paced::wrap(Arc::new(Slow), Pace::Fast).is_none());
        let paced = Paced {
            inner: Arc::new(Slow),
            pacer: Mutex::new(Pacer::new(Pace::Gentle)),
        };
        let began = Instant::now();
        for _ in 0..5 {
            paced
                .write_bytes(
                    FileType::Pack,
                    &Id::default(),
                    false,
                    vec![0u8; 1 << 20].into(),
                )
                .unwrap();
        }
        // 5 × 20 ms of writing at most 60 % of the time: it rested too.
        assert!(
            paced.rested() > std::time::Duration::ZERO,
            "{:?}",
            paced.rested()
        );
        assert!(
            began.elapsed() >= std::time::Duration::from_millis(100) + paced.rested(),
            "{:?}",
            began.elapsed()
        );
    }
}
