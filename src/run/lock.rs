//! One writer per run folder. Two processes appending to the same history or replacing the same
//! checkpoint interleave into a run that matches neither (and that no resume can continue), so
//! every writing process holds `<run>/lock` for its whole life and a second one is refused.
//!
//! The lock file names its holder (pid, the process's start time, host, command line) as JSON.
//! It is published whole: written to a temp file, then hard-linked to `lock`, which fails if
//! `lock` exists, so of two processes exactly one wins and nobody ever reads a half-written lock.
//!
//! A holder that was killed leaves its lock behind. On Linux the holder is alive when
//! `/proc/<pid>` exists *and* that process's start time (field 22 of `/proc/<pid>/stat`, in
//! clock ticks since boot) equals the recorded one, so a pid reused by an unrelated process does
//! not keep a dead run locked. A dead holder's lock is renamed aside and the exclusive publish
//! is retried; the rename is checked to have moved exactly the stale lock (see [`take_over`]).
//! Where this cannot be decided (no `/proc`, or the holder ran on another host sharing the
//! folder) the lock counts as held and the error tells the user to delete it if they are sure.
//!
//! A holder on another host (shards of one run on a cluster's shared filesystem) cannot be
//! looked up, so every holder keeps its lock file's modification time fresh ([`HEARTBEAT`]);
//! a lock from another host whose heartbeat is older than [`STALE_AFTER`] belongs to a process
//! that is gone (a killed pod or node), and is taken over like a dead local one. That assumes
//! the hosts' clocks agree to well within `STALE_AFTER`.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The lock file's name inside a run folder.
pub const LOCK_FILE: &str = "lock";

/// Temp files of this module start with this; they are only ever an instant old unless their
/// process was killed (see [`is_lock_file`]).
const TEMP_PREFIX: &str = ".lock.tmp-";

/// How long an unreadable lock file is given to be a lock still being written (only a
/// filesystem without hard links writes it in place) before it counts as stale.
const GARBLED_GRACE: Duration = Duration::from_secs(2);

/// How often a holder refreshes its lock file's modification time.
pub const HEARTBEAT: Duration = Duration::from_secs(10);

/// A lock from another host not refreshed for this long is stale (see the module docs).
pub const STALE_AFTER: Duration = Duration::from_secs(60);

/// Whether a file name in a run folder belongs to the lock rather than to the run.
pub(crate) fn is_lock_file(name: &str) -> bool {
    name == LOCK_FILE || name.starts_with(TEMP_PREFIX)
}

/// Who holds a lock: what the lock file says.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Holder {
    pub pid: u32,
    /// Field 22 of `/proc/<pid>/stat`; `None` where there is no `/proc`.
    pub start_ticks: Option<u64>,
    /// When the lock was taken (the process's start, give or take its setup), unix seconds.
    pub since_unix: u64,
    pub host: String,
    pub command: String,
}

impl Holder {
    fn current() -> Holder {
        let pid = std::process::id();
        let command = std::env::args().collect::<Vec<_>>().join(" ");
        Holder {
            pid,
            start_ticks: start_ticks(pid),
            since_unix: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            host: hostname(),
            command: command.chars().take(400).collect(),
        }
    }
}

/// Held for as long as it lives; dropping it removes the lock file.
#[derive(Debug)]
pub struct LockGuard {
    path: PathBuf,
    /// The exact bytes written, so that drop never removes a lock another process has taken.
    bytes: Vec<u8>,
    /// Dropping the sender stops the heartbeat thread.
    heartbeat: Option<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)>,
}

/// Touches `path` every [`HEARTBEAT`] while it still holds `bytes`, until told to stop.
fn start_heartbeat(path: &Path, bytes: &[u8]) -> Option<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (path, bytes) = (path.to_path_buf(), bytes.to_vec());
    let thread = std::thread::Builder::new()
        .name("lock-heartbeat".into())
        .spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(HEARTBEAT) {
                if !fs::read(&path).is_ok_and(|b| b == bytes) {
                    return;
                }
                if let Ok(f) = fs::File::options().append(true).open(&path) {
                    let _ = f.set_modified(SystemTime::now());
                }
            }
        })
        .ok()?;
    Some((tx, thread))
}

impl LockGuard {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some((tx, thread)) = self.heartbeat.take() {
            drop(tx);
            let _ = thread.join();
        }
        if fs::read(&self.path).is_ok_and(|b| b == self.bytes) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

enum Liveness {
    Alive,
    Dead,
    /// Cannot tell; the reason is shown to the user.
    Unknown(String),
}

/// Take the lock of the run folder `dir` (which must exist), or say who holds it.
pub fn acquire(dir: &Path) -> Result<LockGuard> {
    let path = dir.join(LOCK_FILE);
    let mut bytes = serde_json::to_vec_pretty(&Holder::current())
        .map_err(|e| Error::Invalid(format!("{}: cannot serialize the lock: {e}", path.display())))?;
    bytes.push(b'\n');
    let started = Instant::now();
    // Each pass either returns or saw the lock change (released, taken over, still being
    // written); the bound only stops a pathological livelock.
    for _ in 0..500 {
        match publish(&path, &bytes) {
            Ok(()) => {
                sweep_dead_temps(dir);
                let heartbeat = start_heartbeat(&path, &bytes);
                return Ok(LockGuard { path, bytes, heartbeat });
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io(&path, e)),
        }
        let seen = match fs::read(&path) {
            Ok(seen) => seen,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(&path, e)),
        };
        match serde_json::from_slice::<Holder>(&seen) {
            Ok(holder) => match liveness(&holder, heartbeat_age(&path)) {
                Liveness::Alive => return Err(refusal(dir, &path, &holder, None)),
                Liveness::Unknown(why) => return Err(refusal(dir, &path, &holder, Some(why))),
                Liveness::Dead => {}
            },
            Err(_) => {
                let age = fs::metadata(&path).ok().and_then(|m| m.modified().ok()).and_then(|t| t.elapsed().ok());
                if age.is_none_or(|a| a < GARBLED_GRACE) && started.elapsed() < GARBLED_GRACE {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            }
        }
        take_over(&path, &seen)?;
    }
    Err(Error::Locked {
        path: dir.to_path_buf(),
        message: format!("could not take the lock ({}): it kept changing; try again", path.display()),
    })
}

fn refusal(dir: &Path, path: &Path, h: &Holder, unknown: Option<String>) -> Error {
    let who = format!("pid {}, since {}, on host {}: `{}`", h.pid, utc(h.since_unix), h.host, h.command);
    let message = match unknown {
        None => format!(
            "is being written by another cellnas process ({who}); wait for it to finish or stop it. \
             If that process is gone, its lock ({}) is stale and is taken over automatically",
            path.display()
        ),
        Some(why) => format!(
            "is locked by a cellnas process ({who}) that may still be writing it; cellnas cannot tell \
             whether it is running ({why}). If you are sure it is not, delete {} and try again",
            path.display()
        ),
    };
    Error::Locked { path: dir.to_path_buf(), message }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn temp_path(lock: &Path) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    super::atomic::parent_dir(lock).join(format!("{TEMP_PREFIX}{}-{n}", std::process::id()))
}

/// Create `path` with `bytes` if it does not exist (`AlreadyExists` if it does). A hard link
/// makes the complete file appear at once; a filesystem without hard links gets `create_new`,
/// where a reader may briefly see it empty (hence [`GARBLED_GRACE`]).
fn publish(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let write_new = |p: &Path| -> std::io::Result<()> {
        let mut f = OpenOptions::new().write(true).create_new(true).open(p)?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    let temp = temp_path(path);
    write_new(&temp)?;
    let linked = fs::hard_link(&temp, path);
    let _ = fs::remove_file(&temp);
    match linked {
        Err(e) if e.kind() != ErrorKind::AlreadyExists => write_new(path),
        r => r,
    }
}

/// Remove the stale lock whose content was `seen`. Two processes may both judge the same lock
/// stale; the loser of that race must not remove the winner's fresh lock. So the lock is renamed
/// aside (atomic: at most one process moves any given file) and the moved file is compared with
/// `seen`: a different one is a lock just taken by someone else, and is linked back (exclusive,
/// like the publish). Of two racing processes exactly one ends up holding the lock; the race
/// left needs a third process to publish in the instant between that rename and the link back.
fn take_over(path: &Path, seen: &[u8]) -> Result<()> {
    let aside = temp_path(path);
    match fs::rename(path, &aside) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(path, e)),
    }
    if fs::read(&aside).is_ok_and(|moved| moved != seen) {
        let _ = fs::hard_link(&aside, path);
    }
    fs::remove_file(&aside).map_err(|e| Error::io(&aside, e))
}

/// Remove this module's temp files whose process is certainly gone (a kill between writing
/// and linking). A live pid's may belong to a process racing for the lock right now.
fn sweep_dead_temps(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().filter(|n| n.starts_with(TEMP_PREFIX)).and_then(super::atomic::temp_file_pid) else {
            continue;
        };
        if pid != std::process::id() && proc_available() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Time since the lock file was last touched (None if that cannot be read).
fn heartbeat_age(path: &Path) -> Option<Duration> {
    fs::metadata(path).ok()?.modified().ok()?.elapsed().ok()
}

fn liveness(h: &Holder, heartbeat_age: Option<Duration>) -> Liveness {
    if h.host != hostname() {
        return match heartbeat_age {
            Some(age) if age > STALE_AFTER => Liveness::Dead,
            Some(age) => Liveness::Unknown(format!(
                "it runs on host {}, this is {}; its heartbeat is {}s old, and it counts as gone once that passes {}s",
                h.host,
                hostname(),
                age.as_secs(),
                STALE_AFTER.as_secs()
            )),
            None => Liveness::Unknown(format!("it ran on host {}, this is {}", h.host, hostname())),
        };
    }
    if !proc_available() {
        return Liveness::Unknown("this system has no /proc to look processes up in".into());
    }
    match fs::read_to_string(format!("/proc/{}/stat", h.pid)) {
        Err(e) if e.kind() == ErrorKind::NotFound => Liveness::Dead,
        Err(e) => Liveness::Unknown(format!("/proc/{}/stat: {e}", h.pid)),
        // A killed holder not yet reaped by its parent is a zombie: still listed, never writing.
        Ok(stat) if matches!(stat_field(&stat, 3), Some("Z" | "X" | "x")) => Liveness::Dead,
        Ok(stat) => match (h.start_ticks, parse_start_ticks(&stat)) {
            (Some(want), Some(have)) if want != have => Liveness::Dead,
            _ => Liveness::Alive,
        },
    }
}

fn proc_available() -> bool {
    Path::new("/proc/self/stat").is_file()
}

fn start_ticks(pid: u32) -> Option<u64> {
    parse_start_ticks(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Field 22 of a `/proc/<pid>/stat` line: the process's start time.
fn parse_start_ticks(stat: &str) -> Option<u64> {
    stat_field(stat, 22)?.parse().ok()
}

/// Field `n` (from 3, as `man proc` counts) of a `/proc/<pid>/stat` line. The command name
/// (field 2) is in parentheses and may itself hold spaces and parentheses, so fields are
/// counted after the last `)`.
fn stat_field(stat: &str, n: usize) -> Option<&str> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(n.checked_sub(3)?)
}

fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| fs::read_to_string(p).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()))
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_default()
}

/// `YYYY-MM-DD HH:MM:SS UTC` (days to civil date: Howard Hinnant's algorithm).
fn utc(secs: u64) -> String {
    let (days, rem) = ((secs / 86400) as i64, secs % 86400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem / 60 % 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("cellnas-lock-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn write_holder(dir: &Path, h: &Holder) {
        fs::write(dir.join(LOCK_FILE), serde_json::to_vec(h).unwrap()).unwrap();
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        v.sort();
        v
    }

    #[test]
    fn acquire_writes_the_holder_and_drop_releases() {
        let dir = scratch("basic");
        let guard = acquire(&dir).unwrap();
        let h: Holder = serde_json::from_slice(&fs::read(guard.path()).unwrap()).unwrap();
        assert_eq!(h.pid, std::process::id());
        assert_eq!(h.host, hostname());
        if proc_available() {
            assert!(h.start_ticks.is_some());
        }
        assert_eq!(names(&dir), [LOCK_FILE]);
        drop(guard);
        assert!(names(&dir).is_empty());
        drop(acquire(&dir).unwrap());
    }

    #[test]
    fn a_second_acquire_while_held_is_refused_naming_the_holder() {
        let dir = scratch("twice");
        let guard = acquire(&dir).unwrap();
        let err = acquire(&dir).unwrap_err();
        assert!(matches!(err, Error::Locked { .. }));
        let msg = err.to_string();
        assert!(msg.contains(&format!("pid {}", std::process::id())) && msg.contains("another cellnas process"), "{msg}");
        assert!(msg.contains(&dir.display().to_string()) && msg.contains(" UTC"), "{msg}");
        // The refused attempt leaves the holder's lock alone.
        assert_eq!(names(&dir), [LOCK_FILE]);
        drop(guard);
    }

    #[test]
    fn a_dead_or_recycled_holder_is_taken_over() {
        if !proc_available() {
            return;
        }
        let dir = scratch("stale");
        let mut h = Holder::current();
        // Above any pid_max (2^22), so never a live process.
        h.pid = 4_000_000_000;
        write_holder(&dir, &h);
        drop(acquire(&dir).unwrap());
        // This very process, but started at another time: its pid was reused.
        let mut h = Holder::current();
        h.start_ticks = h.start_ticks.map(|t| t + 1);
        write_holder(&dir, &h);
        let guard = acquire(&dir).unwrap();
        let now: Holder = serde_json::from_slice(&fs::read(guard.path()).unwrap()).unwrap();
        assert_eq!(now.start_ticks, start_ticks(std::process::id()));
        assert_eq!(names(&dir), [LOCK_FILE]);
    }

    #[test]
    fn a_killed_holder_not_yet_reaped_is_dead() {
        if !proc_available() {
            return;
        }
        let dir = scratch("zombie");
        let Ok(mut child) = std::process::Command::new("true").spawn() else { return };
        let mut h = Holder::current();
        h.pid = child.id();
        h.start_ticks = start_ticks(h.pid);
        let t = Instant::now();
        while start_ticks(h.pid).is_some() && !fs::read_to_string(format!("/proc/{}/stat", h.pid)).is_ok_and(|s| stat_field(&s, 3) == Some("Z")) {
            assert!(t.elapsed() < Duration::from_secs(10), "child never exited");
            std::thread::sleep(Duration::from_millis(5));
        }
        write_holder(&dir, &h);
        drop(acquire(&dir).unwrap());
        child.wait().unwrap();
    }

    #[test]
    fn an_unreadable_lock_waits_out_its_grace_then_is_stale() {
        let dir = scratch("garbled");
        let path = dir.join(LOCK_FILE);
        // Old and garbled (a holder killed mid-write on a filesystem without hard links).
        fs::write(&path, b"{\"pid\": 12").unwrap();
        let old = SystemTime::now() - Duration::from_secs(3600);
        fs::File::options().write(true).open(&path).unwrap().set_modified(old).unwrap();
        let t = Instant::now();
        drop(acquire(&dir).unwrap());
        assert!(t.elapsed() < GARBLED_GRACE);
        // Fresh and empty: it may be a lock being written, so it is waited on first.
        fs::write(&path, b"").unwrap();
        let t = Instant::now();
        drop(acquire(&dir).unwrap());
        assert!(t.elapsed() >= GARBLED_GRACE);
        assert!(names(&dir).is_empty());
    }

    #[test]
    fn a_holder_on_another_host_with_a_fresh_heartbeat_is_not_taken_over() {
        let dir = scratch("host");
        let mut h = Holder::current();
        h.host = "elsewhere".into();
        h.pid = 4_000_000_000;
        write_holder(&dir, &h);
        let msg = acquire(&dir).unwrap_err().to_string();
        assert!(msg.contains("host elsewhere") && msg.contains("delete") && msg.contains(LOCK_FILE), "{msg}");
        assert_eq!(serde_json::from_slice::<Holder>(&fs::read(dir.join(LOCK_FILE)).unwrap()).unwrap(), h);
    }

    #[test]
    fn a_holder_on_another_host_whose_heartbeat_stopped_is_taken_over() {
        let dir = scratch("host-stale");
        let mut h = Holder::current();
        h.host = "elsewhere".into();
        write_holder(&dir, &h);
        let old = SystemTime::now() - STALE_AFTER - Duration::from_secs(5);
        fs::File::options().write(true).open(dir.join(LOCK_FILE)).unwrap().set_modified(old).unwrap();
        let guard = acquire(&dir).unwrap();
        let now: Holder = serde_json::from_slice(&fs::read(guard.path()).unwrap()).unwrap();
        assert_eq!(now.host, hostname());
    }

    #[test]
    fn the_holder_keeps_its_heartbeat_fresh() {
        let dir = scratch("heartbeat");
        let guard = acquire(&dir).unwrap();
        let old = SystemTime::now() - Duration::from_secs(3600);
        fs::File::options().write(true).open(guard.path()).unwrap().set_modified(old).unwrap();
        std::thread::sleep(HEARTBEAT + Duration::from_secs(2));
        assert!(heartbeat_age(guard.path()).unwrap() < HEARTBEAT + Duration::from_secs(1));
        drop(guard);
        assert!(names(&dir).is_empty());
    }

    #[test]
    fn of_two_racing_to_take_over_a_stale_lock_exactly_one_wins() {
        if !proc_available() {
            return;
        }
        for round in 0..50 {
            let dir = scratch(&format!("race-{round}"));
            let mut h = Holder::current();
            h.pid = 4_000_000_000;
            write_holder(&dir, &h);
            let barrier = std::sync::Barrier::new(2);
            let results: Vec<Result<LockGuard>> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..2)
                    .map(|_| {
                        s.spawn(|| {
                            barrier.wait();
                            acquire(&dir)
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            // Threads share a pid and start time, so the winner's lock is live to the others.
            assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "round {round}");
            assert!(results.iter().filter_map(|r| r.as_ref().err()).all(|e| matches!(e, Error::Locked { .. })));
            drop(results);
            assert!(names(&dir).is_empty(), "round {round}: {:?}", names(&dir));
        }
    }

    #[test]
    fn drop_leaves_a_lock_that_is_no_longer_its_own() {
        let dir = scratch("not-mine");
        let guard = acquire(&dir).unwrap();
        fs::write(dir.join(LOCK_FILE), b"someone else").unwrap();
        drop(guard);
        assert_eq!(fs::read(dir.join(LOCK_FILE)).unwrap(), b"someone else");
    }

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let stat = "77 (a) b (c) S 1 77 77 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 123456 0 0";
        assert_eq!(parse_start_ticks(stat), Some(123456));
        assert_eq!(parse_start_ticks("garbage"), None);
        assert_eq!(stat_field(stat, 3), Some("S"));
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_795_988_169), "2026-11-29 21:36:09 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
    }
}
