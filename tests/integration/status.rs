//! `persnap status`, as a monitoring system runs it: real protected
//! databases, real backups (sqlite-online, no root needed) under a real
//! writer, a real failed backup, and the exit codes and words each gives.
#![cfg(target_os = "linux")]

use crate::common;

use std::path::Path;
use std::process::Output;

use common::*;
use persnap::history::Outcome;
use persnap::loadgen::Mode;
use persnap::registry::{Database, Registry};

/// What these tests ask of a machine.
trait Status {
    fn status(&self) -> (Option<i32>, String, String);
    fn backup(&self, src: &Path, dest: &Path, extra: &[&str]) -> Output;
}

impl Status for Machine {
    fn status(&self) -> (Option<i32>, String, String) {
        let out = self.persnap(&["status"]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr(&out),
        )
    }

    fn backup(&self, src: &Path, dest: &Path, extra: &[&str]) -> Output {
        let mut args = vec![
            "backup",
            "--source",
            src.to_str().unwrap(),
            "--dest",
            dest.to_str().unwrap(),
            "--method",
            "sqlite-online",
        ];
        args.extend(extra);
        self.persnap(&args)
    }
}

#[test]
fn status_tells_monitoring_whether_each_database_is_protected() {
    let m = Machine::new();
    let (code, _, err) = m.status();
    assert_eq!(code, Some(3), "nothing protected: unknown\n{err}");
    assert!(err.contains("No database is protected"), "{err}");

    let src = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let db = make_store(src.path(), "persistence.db", Mode::Rollback, 2);
    let folder = persnap::fsutil::canonicalize(src.path()).unwrap();
    let mut entry = Database::new("orders", &folder, "persistence.db");
    entry.location = Some(dest.path().to_owned());
    Registry::at(m.registry()).add(&entry).unwrap();

    let (code, out, err) = m.status();
    assert_eq!(
        code,
        Some(2),
        "registered, never backed up: critical\n{out}{err}"
    );
    assert!(out.contains("orders: Never backed up."), "{out}");
    assert!(out.contains("set a schedule"), "{out}");
    assert!(err.contains("never backed up: orders"), "{err}");

    // A real backup under a live writer.
    let writer = Writer::start(&db);
    let done = m.backup(src.path(), dest.path(), &[]);
    assert!(done.status.success(), "{}", stderr(&done));
    writer.stop();
    let (code, out, err) = m.status();
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("orders: Protected: last verified backup just now."),
        "{out}"
    );
    assert!(
        out.contains(&format!("Backups go to {}", dest.path().display())),
        "{out}"
    );
    assert!(out.contains("free."), "the free space is shown: {out}");

    // Three days later (the history says so), with no schedule: attention.
    let history = m.history();
    let mut good = history.load().unwrap().pop().unwrap();
    good.started -= chrono::Duration::days(3);
    good.finished = good.finished.map(|t| t - chrono::Duration::days(3));
    history.upsert(&good).unwrap();
    let (code, out, _) = m.status();
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("orders: No backup for 3 days."), "{out}");
    // A monitoring system may ask for more.
    let strict = m.persnap(&["status", "--max-age", "5d"]);
    assert_eq!(strict.status.code(), Some(0), "{}", stderr(&strict));

    // A backup that fails for real: the correlator holds its lock past the timeout.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("BEGIN EXCLUSIVE; UPDATE accounts SET balance = balance WHERE id = 0;")
        .unwrap();
    let failed = m.backup(src.path(), dest.path(), &["--timeout", "1"]);
    assert_eq!(failed.status.code(), Some(4), "{}", stderr(&failed));
    drop(conn);
    let (code, out, err) = m.status();
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(
        out.contains("orders: The last backup today at")
            && out.contains("failed: copying the database failed."),
        "{out}"
    );
    assert!(err.contains("failing: orders"), "{err}");

    // The same as JSON, for scripts.
    let json = m.persnap(&["status", "--json"]);
    assert_eq!(json.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let card = &v["databases"][0];
    assert_eq!(card["name"], "orders");
    assert_eq!(card["level"], "failing");
    assert!(matches!(
        serde_json::from_value::<Outcome>(card["last_run"]["outcome"].clone()).unwrap(),
        Outcome::Failed { .. }
    ));
    assert_eq!(card["last_good"]["id"], good.id.as_str());

    // A good backup again clears it.
    let done = m.backup(src.path(), dest.path(), &[]);
    assert!(done.status.success(), "{}", stderr(&done));
    assert_eq!(m.status().0, Some(0));
}

/// A scheduled run the helper turns down before it starts (its backup
/// location is gone) is recorded as a failed scheduled run, so status says
/// it failed and why — not that it was missed, not nothing.
#[test]
fn a_scheduled_run_refused_before_it_starts_is_a_failure() {
    if !require_root("a_scheduled_run_refused_before_it_starts_is_a_failure") {
        return;
    }
    let m = Machine::new();
    let src = tempfile::tempdir().unwrap();
    make_store(src.path(), "persistence.db", Mode::Wal, 1);
    let registry = Registry::at(m.registry());
    let mut db = Database::new("orders", src.path(), "persistence.db");
    db.location = Some("/var/tmp/persnap-gone-location".into());
    registry.add(&db).unwrap();
    let out = m.persnap(&[
        "backup",
        "--source",
        src.path().to_str().unwrap(),
        "--dest",
        "/var/tmp/persnap-gone-location",
        "--scheduled",
        "nightly",
    ]);
    assert!(!out.status.success());
    let runs = m.history().load().unwrap();
    assert_eq!(runs.len(), 1, "the refusal is recorded: {}", stderr(&out));
    assert_eq!(runs[0].scheduled.as_deref(), Some("nightly"));
    assert!(matches!(runs[0].outcome, Outcome::Failed { .. }));
    let (code, said, _) = m.status();
    assert_eq!(code, Some(2), "{said}");
    assert!(
        said.contains("The scheduled backup")
            && said.contains("failed: the backup location is not there"),
        "{said}"
    );
}

/// A monitoring check runs `persnap status` as root. A schedule's maker
/// puts a FIFO (or a link to a root-only file) where their history goes:
/// status still answers within seconds, reads nothing of root's, and says
/// that history could not be read.
#[test]
fn status_as_root_is_not_stalled_or_misled_by_a_users_history() {
    use std::os::unix::fs::lchown;
    if !require_root("status_as_root_is_not_stalled_or_misled_by_a_users_history") {
        return;
    }
    use chrono::{NaiveTime, Utc};
    use persnap::schedule::{Schedule, When, systemd};
    let m = Machine::new();
    let src = tempfile::tempdir().unwrap();
    let registry = Registry::at(m.registry());
    registry
        .add(&Database::new("orders", src.path(), "persistence.db"))
        .unwrap();
    let mut schedules = Vec::new();
    for (name, plant) in [("fifo", "fifo"), ("link", "link")] {
        let theirs = tempfile::tempdir_in("/var/tmp").unwrap();
        let history = theirs.path().join("history.json");
        match plant {
            "fifo" => {
                let c = std::ffi::CString::new(history.as_os_str().as_encoded_bytes()).unwrap();
                // SAFETY: mkfifo with a valid C string.
                assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0);
            }
            _ => std::os::unix::fs::symlink("/etc/shadow", &history).unwrap(),
        }
        lchown(&history, Some(65534), Some(65534)).unwrap();
        lchown(theirs.path(), Some(65534), Some(65534)).unwrap();
        let s = Schedule {
            name: name.into(),
            source: src.path().to_owned(),
            dest: "/var/tmp/persnap-nowhere".into(),
            store_name: "persistence.db".into(),
            method: persnap::method::MethodChoice::Auto,
            retention: Default::default(),
            pace: Default::default(),
            when: When::Daily(NaiveTime::from_hms_opt(2, 0, 0).unwrap()),
            history_dir: theirs.path().to_owned(),
            created: Some(Utc::now()),
            uid: Some(65534),
            run_as: None,
            password: Default::default(),
            repository: None,
            unlock: None,
            offsite: None,
            offsite_unlock: None,
            drill: false,
        };
        systemd::write_units(&s, &m.units(), &bin("persnap")).unwrap();
        schedules.push(theirs);
    }
    let mut child = m
        .command(&["status"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > std::time::Duration::from_secs(5) {
            child.kill().unwrap();
            panic!("persnap status hung on a FIFO for a history");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "never backed up: {said}");
    assert_eq!(
        said.matches("The history of the schedule").count(),
        2,
        "both histories refused, in words: {said}"
    );
    assert!(!said.contains("root:"), "nothing of /etc/shadow: {said}");
}

/// Debian's Prometheus tools, as .ci/setup takes them out of their
/// packages; `None` (said) where they are not, which CI forbids.
fn prometheus_tool(name: &str) -> Option<std::path::PathBuf> {
    let path = Path::new("/opt/persnap-ci/prometheus/usr/bin").join(name);
    if path.is_file() {
        return Some(path);
    }
    if std::env::var_os("PERSNAP_REQUIRE_ROOT_TESTS").is_some() {
        panic!(
            "{} is missing, and CI forbids skipping: run .ci/setup",
            path.display()
        );
    }
    eprintln!(
        "SKIP the Prometheus checks: {} is missing (run .ci/setup)",
        path.display()
    );
    None
}

/// `persnap status --format prometheus`, judged by promtool (no problem,
/// not even a lint), and its samples by series.
fn metrics(m: &Machine, promtool: &Path) -> std::collections::BTreeMap<String, f64> {
    let out = m.persnap(&["status", "--format", "prometheus"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut check = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let judged = check.wait_with_output().unwrap();
    assert!(
        judged.status.success() && judged.stdout.is_empty() && judged.stderr.is_empty(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&judged.stdout),
        String::from_utf8_lossy(&judged.stderr)
    );
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse().unwrap())
        })
        .collect()
}

/// A free port on loopback.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` from a server on loopback, its body.
fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).ok()?;
    reply
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
}

/// `persnap status --format prometheus` (issue #31): after a good backup, a
/// failed one, for a database never backed up, after a passed and a
/// failed restore drill — each time promtool finds nothing to say and the
/// values are the history's. Written as node_exporter's textfile, the
/// file is replaced whole (a reader never sees half of it) and a real
/// node_exporter serves it.
#[test]
fn status_speaks_prometheus_for_promtool_and_node_exporter() {
    let (Some(promtool), Some(exporter)) = (
        prometheus_tool("promtool"),
        prometheus_tool("prometheus-node-exporter"),
    ) else {
        return;
    };
    let m = Machine::new();
    let registry = Registry::at(m.registry());
    let src = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let db = make_store(src.path(), "persistence.db", Mode::Rollback, 2);
    let mut orders = Database::new(
        "orders",
        persnap::fsutil::canonicalize(src.path()).unwrap(),
        "persistence.db",
    );
    orders.location = Some(dest.path().to_owned());
    orders.method = persnap::method::MethodChoice::Explicit(persnap::method::Method::SqliteOnline);
    registry.add(&orders).unwrap();
    // Never backed up, its location a path that needs escaping.
    let other = tempfile::tempdir().unwrap();
    make_store(other.path(), "persistence.db", Mode::Rollback, 1);
    let odd = dest.path().join("odd \"quoted\" \\ folder");
    std::fs::create_dir(&odd).unwrap();
    let mut never = Database::new(
        "never",
        persnap::fsutil::canonicalize(other.path()).unwrap(),
        "persistence.db",
    );
    never.location = Some(odd.clone());
    registry.add(&never).unwrap();
    let at = |db: &str| {
        format!("{{database=\"{db}\",location=\"{}\"}}", {
            let shown = if db == "orders" {
                dest.path().to_owned()
            } else {
                odd.clone()
            };
            shown
                .display()
                .to_string()
                .replace('\\', r"\\")
                .replace('"', r#"\""#)
        })
    };

    let v = metrics(&m, &promtool);
    for name in ["orders", "never"] {
        assert_eq!(v[&format!("persnap_protected{{database=\"{name}\"}}")], 0.0);
        assert_eq!(
            v[&format!("persnap_state{{database=\"{name}\",state=\"never\"}}")],
            1.0
        );
        assert_eq!(
            v[&format!("persnap_last_success_timestamp_seconds{}", at(name))],
            0.0
        );
        assert_eq!(
            v[&format!("persnap_last_drill_success_timestamp_seconds{}", at(name))],
            0.0
        );
        assert!(!v.contains_key(&format!("persnap_last_attempt_success{}", at(name))));
    }

    // A good backup under a live writer. Its record in the journal
    // (Linux; a socket of the test's standing in for journald's) carries
    // the fields to find it by.
    let journal = std::os::unix::net::UnixDatagram::bind(m.journal_socket()).unwrap();
    journal.set_nonblocking(true).unwrap();
    let records = || {
        let mut all = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(n) = journal.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let fields: std::collections::BTreeMap<String, String> = text
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            all.push(fields);
        }
        all
    };
    let writer = Writer::start(&db);
    let done = m.backup(src.path(), dest.path(), &[]);
    assert!(done.status.success(), "{}", stderr(&done));
    writer.stop();
    let good = m.history().load().unwrap().pop().unwrap();
    let sent = records();
    assert_eq!(sent.len(), 1, "one record per run: {sent:?}");
    let record = &sent[0];
    assert_eq!(record["SYSLOG_IDENTIFIER"], "persnap");
    assert_eq!(record["PRIORITY"], "6");
    assert_eq!(record["PERSNAP_EVENT_ID"], "100");
    assert_eq!(record["PERSNAP_OUTCOME"], "completed");
    assert_eq!(record["PERSNAP_KIND"], "backup");
    assert_eq!(record["PERSNAP_RUN_ID"], good.id);
    assert_eq!(
        record["PERSNAP_LOCATION"],
        dest.path().display().to_string()
    );
    assert!(
        record["MESSAGE"].starts_with("The backup of persistence.db in ")
            && record["MESSAGE"].contains("is verified and kept in"),
        "{record:?}"
    );
    let v = metrics(&m, &promtool);
    assert_eq!(v["persnap_protected{database=\"orders\"}"], 1.0);
    assert_eq!(
        v["persnap_state{database=\"orders\",state=\"protected\"}"],
        1.0
    );
    assert_eq!(v["persnap_state{database=\"orders\",state=\"never\"}"], 0.0);
    let finished = good.finished.unwrap().timestamp_millis() as f64 / 1000.0;
    assert_eq!(
        v[&format!("persnap_last_success_timestamp_seconds{}", at("orders"))],
        finished
    );
    assert_eq!(
        v[&format!("persnap_last_attempt_success{}", at("orders"))],
        1.0
    );
    assert_eq!(
        v[&format!("persnap_backup_size_bytes{}", at("orders"))],
        good.bytes as f64
    );
    assert_eq!(
        v[&format!("persnap_backup_duration_seconds{}", at("orders"))],
        good.duration_secs.unwrap()
    );
    assert!(v[&format!("persnap_location_free_bytes{}", at("orders"))] > 0.0);
    assert_eq!(v["persnap_protected{database=\"never\"}"], 0.0);

    // A restore drill proves it.
    let drill = m.persnap(&["drill", "orders"]);
    assert!(drill.status.success(), "{}", stderr(&drill));
    let v = metrics(&m, &promtool);
    let proven = v[&format!(
        "persnap_last_drill_success_timestamp_seconds{}",
        at("orders")
    )];
    assert!(proven >= finished, "{proven} {finished}");
    assert_eq!(
        v[&format!("persnap_last_drill_success{}", at("orders"))],
        1.0
    );

    // A backup that fails for real: the correlator holds its lock past
    // the timeout. The last success stands; the attempt failed.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("BEGIN EXCLUSIVE; UPDATE accounts SET balance = balance WHERE id = 0;")
        .unwrap();
    let failed = m.backup(src.path(), dest.path(), &["--timeout", "1"]);
    assert_eq!(failed.status.code(), Some(4), "{}", stderr(&failed));
    drop(conn);
    let sent = records();
    let failure = sent
        .iter()
        .find(|r| r["PERSNAP_KIND"] == "backup")
        .expect("the failed backup's record");
    assert_eq!(
        (
            failure["PERSNAP_EVENT_ID"].as_str(),
            failure["PRIORITY"].as_str(),
            failure["PERSNAP_OUTCOME"].as_str()
        ),
        ("101", "3", "failed"),
        "{sent:?}"
    );
    assert!(
        failure["MESSAGE"].contains("failed during copy"),
        "{failure:?}"
    );
    let v = metrics(&m, &promtool);
    assert_eq!(v["persnap_protected{database=\"orders\"}"], 0.0);
    assert_eq!(
        v["persnap_state{database=\"orders\",state=\"failing\"}"],
        1.0
    );
    assert_eq!(
        v[&format!("persnap_last_attempt_success{}", at("orders"))],
        0.0
    );
    assert_eq!(
        v[&format!("persnap_last_success_timestamp_seconds{}", at("orders"))],
        finished
    );
    assert!(v[&format!("persnap_last_attempt_timestamp_seconds{}", at("orders"))] > finished);

    // A drill that finds the backup damaged: the last proof stands, the
    // newest drill failed.
    let set = good.backup_path.clone().unwrap();
    let file = set.join("persistence.db");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    let drill = m.persnap(&["drill", "orders"]);
    assert_eq!(drill.status.code(), Some(5), "{}", stderr(&drill));
    let v = metrics(&m, &promtool);
    assert_eq!(
        v[&format!("persnap_last_drill_success{}", at("orders"))],
        0.0
    );
    assert_eq!(
        v[&format!(
            "persnap_last_drill_success_timestamp_seconds{}",
            at("orders")
        )],
        proven
    );

    // node_exporter's textfile: replaced whole, readable by its account.
    let textfiles = tempfile::tempdir().unwrap();
    let prom = textfiles.path().join("persnap.prom");
    let write = || {
        let out = m.persnap(&[
            "status",
            "--format",
            "prometheus",
            "--textfile",
            textfiles.path().to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    };
    write();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&prom).unwrap().permissions().mode() & 0o777,
        0o644
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (stop, prom) = (stop.clone(), prom.clone());
        std::thread::spawn(move || {
            let mut reads = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let text = std::fs::read_to_string(&prom).unwrap();
                assert!(
                    text.starts_with("# HELP persnap_protected ")
                        && text.ends_with("persnap_state{database=\"orders\",state=\"never\"} 0\n"),
                    "a read saw part of the file:\n{text}"
                );
                reads += 1;
            }
            reads
        })
    };
    for _ in 0..20 {
        write();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads = reader.join().unwrap();
    assert!(reads > 20, "the reader read {reads} times");

    let port = free_port();
    let mut served = std::process::Command::new(exporter)
        .args([
            "--collector.disable-defaults",
            "--collector.textfile",
            &format!(
                "--collector.textfile.directory={}",
                textfiles.path().display()
            ),
            &format!("--web.listen-address=127.0.0.1:{port}"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let scraped = loop {
        if let Some(body) = http_get(port, "/metrics") {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node_exporter did not answer"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let _ = served.kill();
    let _ = served.wait();
    assert!(
        scraped.contains("node_textfile_scrape_error 0"),
        "{scraped}"
    );
    assert!(
        scraped.contains("persnap_protected{database=\"orders\"} 0"),
        "{scraped}"
    );
    assert!(
        scraped.contains(&format!("persnap_last_drill_success{} 0", at("orders"))),
        "{scraped}"
    );

    // The log for support: each run's steps and how it ended; with
    // --verbose, the same on the terminal.
    let log = std::fs::read_to_string(m.logs().join("persnap.log")).unwrap();
    for said in [
        "started: persnap backup",
        "== copy",
        "== verify",
        "completed in",
        "failed during copy",
        "started: persnap drill",
        "persnap backup: exit status 4",
    ] {
        assert!(log.contains(said), "{said:?} is not in the log:\n{log}");
    }
    let verbose = m.persnap(&["--verbose", "status", "--format", "prometheus"]);
    assert!(
        stderr(&verbose).contains("started: persnap status"),
        "{}",
        stderr(&verbose)
    );
}
