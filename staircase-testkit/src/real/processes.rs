//! Child processes of the real-server harness: spawning (tied to this process's lifetime),
//! killing by pid, free loopback ports, scratch directories and memory figures.

use std::fs::File;
use std::io;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, mpsc};

/// One process started by the harness: killed (SIGKILL, by pid) and reaped when dropped.
///
/// Besides the [`Drop`] impl, every child is spawned with `PR_SET_PDEATHSIG = SIGKILL` from a
/// thread that lives as long as the test process, so the kernel kills it even when the test
/// process itself dies without unwinding (a `SIGKILL`ed test binary, an aborting panic).
#[derive(Debug)]
pub struct ChildProcess {
    name: &'static str,
    pid: u32,
    log: PathBuf,
    child: Mutex<Option<Child>>,
}

impl ChildProcess {
    /// Starts `program` with `args`, its stdout and stderr appended to `log`.
    pub fn spawn(
        name: &'static str,
        program: &Path,
        args: &[String],
        log: PathBuf,
    ) -> io::Result<ChildProcess> {
        let out = File::create(&log)?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(program);
        cmd.args(args).stdin(Stdio::null()).stdout(out).stderr(err);
        let parent = std::process::id();
        // SAFETY: the closure runs between fork and exec and only makes async-signal-safe calls
        // (prctl, getppid, _exit).
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The parent may have died between fork and prctl.
                if libc::getppid() as u32 != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let child = spawn_from_long_lived_thread(cmd)?;
        Ok(ChildProcess {
            name,
            pid: child.id(),
            log,
            child: Mutex::new(Some(child)),
        })
    }

    /// A short name ("etcd", "kube-apiserver", ...).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The operating-system process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The file holding the process's stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// `Some(description)` when the process has already exited.
    pub fn exited(&self) -> Option<String> {
        let mut guard = self.child.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_mut() {
            None => Some("stopped".into()),
            Some(child) => match child.try_wait() {
                Ok(Some(status)) => Some(status.to_string()),
                Ok(None) => None,
                Err(e) => Some(format!("unknown ({e})")),
            },
        }
    }

    /// The last `lines` lines of the process's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Resident memory in KiB (`VmRSS`), when the process is alive.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// Kills the process by pid (SIGKILL) and waits for it. Idempotent.
    pub fn kill(&self) {
        let mut guard = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut child) = guard.take() {
            if let Ok(None) = child.try_wait() {
                // SAFETY: plain syscall; the pid is our own unreaped child, so it cannot have
                // been recycled for another process.
                unsafe {
                    libc::kill(self.pid as libc::pid_t, libc::SIGKILL);
                }
            }
            let _ = child.wait();
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, so children are
/// forked by one thread that is never joined and lives until the process exits.
fn spawn_from_long_lived_thread(cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let sender = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("staircase-real-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawn the process-spawner thread");
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    sender
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((cmd, reply_tx))
        .map_err(|_| io::Error::other("process-spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("process-spawner thread is gone"))?
}

/// A free TCP port on 127.0.0.1: bound to port 0, then released for the child to take.
pub fn free_port() -> io::Result<u16> {
    let listener = TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

/// A fresh directory, removed (with everything in it) when dropped, unless the environment
/// variable `STAIRCASE_REAL_KEEP_DIR=1` asks to keep it for debugging.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Creates `<parent>/staircase-real-<pid>-<n>-<nanos>`, first removing such directories
    /// left behind by test processes that no longer exist (killed before they could clean up).
    pub fn new_in(parent: &Path) -> io::Result<ScratchDir> {
        remove_stale(parent);
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = parent.join(format!("staircase-real-{}-{n}-{nanos}", std::process::id()));
        std::fs::create_dir_all(parent)?;
        std::fs::create_dir(&path)?;
        Ok(ScratchDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the directory now (unless kept). Idempotent.
    pub fn remove(&self) {
        if std::env::var("STAIRCASE_REAL_KEEP_DIR").as_deref() != Ok("1") {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Removes `<parent>/staircase-real-<pid>-*` directories whose process is gone.
fn remove_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name
            .to_str()
            .and_then(|n| n.strip_prefix("staircase-real-"))
        else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
