//! The explicit `sqlite-online` method under a live writer (no root needed).

mod common;

use common::*;
use persnap::backup::{BackupRequest, run_backup};
use persnap::history::History;
use persnap::loadgen::Mode;
use persnap::method::{Method, MethodChoice};
use persnap::progress::{CancelToken, Silent};

fn online_backups_under_writer(mode: Mode) {
    let src = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let db = make_store(src.path(), "persistence.db", mode, 8);
    let history = History::at(dest.path().join("history"));
    let writer = Writer::start(&db);
    let mut req = BackupRequest::new(src.path(), dest.path());
    req.method = MethodChoice::Explicit(Method::SqliteOnline);
    for i in 0..5 {
        let report = run_backup(&req, &history, &mut Silent, &CancelToken::new())
            .unwrap_or_else(|f| panic!("online backup {i} failed during {}: {}", f.step, f.error));
        assert_eq!(report.manifest.method, Method::SqliteOnline);
        assert_eq!(report.manifest.files.len(), 1, "one self-contained file");
        check_backup(&report.backup_dir, "persistence.db");
    }
    let stats = writer.stop();
    eprintln!("{mode:?}: 5 online backups consistent; writer's worst commit {:.1} ms", stats.max_commit_ms);
    assert!(work_leftovers(dest.path()).is_empty());
}

#[test]
fn online_backups_under_writer_rollback_journal() {
    online_backups_under_writer(Mode::Rollback);
}

#[test]
fn online_backups_under_writer_wal() {
    online_backups_under_writer(Mode::Wal);
}
