//! The `sqlite-online` method: SQLite's online backup API on the live file.
//!
//! No snapshot and no root rights are needed, but there is a trade-off,
//! stated wherever the method is offered: the whole database is copied in
//! one backup step, inside one read transaction. In rollback-journal mode
//! that read lock stalls the correlator's commits for the duration of the
//! copy; if the writer keeps the database locked, the step never gets its
//! lock and the backup gives up at the timeout. In WAL mode the writer is
//! not blocked. The source is opened read-only, so persnap never writes to
//! (or checkpoints) the live database.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use crate::copy::{CopiedFile, Meter, hash_file};
use crate::error::{Error, HINT_DEST, Result};
use crate::store::{FileRole, Store};

/// Default time the online backup may wait for its read lock.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
const RETRY_PAUSE: Duration = Duration::from_millis(20);
const RETRY_WAIT: Duration = Duration::from_millis(200);

/// Back up `store` into the new file `dest` with SQLite's backup API.
pub fn backup(
    store: &Store,
    dest: &Path,
    timeout: Duration,
    meter: &mut Meter,
) -> Result<CopiedFile> {
    let src_path = store.dir.join(&store.name);
    let sqlite = |action: &'static str, path: &Path, hint: &'static str| {
        let path = path.to_owned();
        move |source| Error::Sqlite {
            action,
            path,
            source: Box::new(source),
            hint,
        }
    };
    let src = Connection::open_with_flags(
        &src_path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite(
        "open",
        &src_path,
        "Check that the database folder is readable.",
    ))?;
    // Short waits per attempt, so a cancel or the timeout is noticed quickly.
    src.busy_timeout(RETRY_WAIT)
        .map_err(sqlite("configure", &src_path, HINT_DEST))?;
    let mut dst = Connection::open(dest).map_err(sqlite("create", dest, HINT_DEST))?;
    meter.total = store.file(FileRole::Main).map_or(0, |f| f.size);
    let deadline = Instant::now() + timeout;
    {
        let backup = Backup::new(&src, &mut dst).map_err(sqlite(
            "start a backup of",
            &src_path,
            HINT_DEST,
        ))?;
        loop {
            meter.cancel.check()?;
            match backup
                .step(-1)
                .map_err(sqlite("copy", &src_path, HINT_DEST))?
            {
                StepResult::Done => break,
                StepResult::More => {}
                _busy_or_locked if Instant::now() >= deadline => {
                    return Err(Error::OnlineTimeout {
                        seconds: timeout.as_secs(),
                    });
                }
                _busy_or_locked => thread::sleep(RETRY_PAUSE),
            }
        }
    }
    dst.close()
        .map_err(|(_, e)| sqlite("close", dest, HINT_DEST)(e))?;
    // Opened for writing: Windows flushes only through a writable handle.
    std::fs::File::options()
        .write(true)
        .open(dest)
        .and_then(|f| f.sync_all())
        .map_err(Error::io("flush", dest, HINT_DEST))?;
    let (size, sha256) = hash_file(dest, meter)?;
    Ok(CopiedFile {
        name: store.name.clone(),
        role: FileRole::Main,
        size,
        sha256,
    })
}
