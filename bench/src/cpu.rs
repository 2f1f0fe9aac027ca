//! Per-thread CPU clocks.

/// CPU time consumed by the calling thread, in nanoseconds.
pub fn thread_cpu_ns() -> u64 {
    clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// CPU time consumed by the whole process, in nanoseconds.
pub fn process_cpu_ns() -> u64 {
    clock_ns(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// The CPU clock of the calling thread, readable from any thread with [`clock_ns`].
pub fn this_thread_clock() -> libc::clockid_t {
    let mut id: libc::clockid_t = 0;
    // SAFETY: pthread_self is always valid for the calling thread; `id` is a valid out pointer.
    let rc = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut id) };
    assert_eq!(rc, 0, "pthread_getcpuclockid");
    id
}

/// Reads a clock, in nanoseconds.
pub fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out pointer.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The calling thread's kernel id, for [`run_queue_wait_ns`] from any thread.
pub fn this_thread_id() -> libc::pid_t {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// How long thread `tid` of this process has been runnable but waiting for a CPU, in
/// nanoseconds (the second field of `/proc/self/task/TID/schedstat`): time lost to the other
/// threads and processes sharing the cores. 0 where the kernel does not keep it.
pub fn run_queue_wait_ns(tid: libc::pid_t) -> u64 {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// Whether the harness pins its threads (server on CPU 0, operator on CPU 1): on a machine with
/// two CPUs or more, unless `STAIRCASE_BENCH_NO_PIN` is set.
pub fn pinning() -> bool {
    // SAFETY: sysconf has no preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    cpus >= 2 && std::env::var_os("STAIRCASE_BENCH_NO_PIN").is_none()
}

/// Pins the calling thread to CPU `cpu` when [`pinning`] says so; returns whether it did.
pub fn pin_this_thread(cpu: usize) -> bool {
    if !pinning() {
        return false;
    }
    // SAFETY: `set` is a zeroed cpu_set_t, CPU_SET writes within it (cpu < CPU_SETSIZE is
    // checked), and sched_setaffinity(0, ..) applies to the calling thread.
    unsafe {
        if cpu >= libc::CPU_SETSIZE as usize {
            return false;
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}
