//! A sleep that ends at its deadline, not up to two milliseconds later, for the latency fault.
//!
//! tokio's timer counts whole milliseconds: a sleep's deadline is rounded up to the next tick,
//! and an idle current-thread runtime parks for whole milliseconds counted from the truncated
//! current tick. A `tokio::time::sleep(5 ms)` on the server's idle runtime therefore ends
//! 6.1 ms later (measured), and 6–7 ms later on a busy one: the "5 ms" latency fault added 20 to
//! 40 % more than asked, and delivered the delayed requests in bursts, one per tick.
//!
//! [`sleep`] waits on tokio's timer until shortly before the deadline and then on a `timerfd`
//! (nanosecond resolution, woken through the runtime's I/O driver on the same thread) for the
//! rest, so a delay of `d` ends `d` plus wake-up latency (tens of µs) after it started, never
//! earlier. Under `tokio::time::pause()` the coarse part runs on the paused clock and the
//! (at most 2 ms) rest in real time, after which the virtual clock is brought to the deadline,
//! so the delay is still at least `d` on either clock.

use std::time::Duration;

use tokio::time::Instant;

/// What tokio's timer may overshoot by: its 1 ms tick plus the millisecond-rounded park.
const TOKIO_SLACK: Duration = Duration::from_millis(2);

/// Sleeps for `d`, ending as close after `d` as the OS allows (see the module docs).
pub(crate) async fn sleep(d: Duration) {
    sleep_until(Instant::now() + d).await;
}

/// Sleeps until `deadline`, ending as close after it as the OS allows; at once when it passed.
pub(crate) async fn sleep_until(deadline: Instant) {
    if let Some(coarse) = deadline.checked_sub(TOKIO_SLACK)
        && coarse > Instant::now()
    {
        tokio::time::sleep_until(coarse).await;
    }
    let rest = deadline.saturating_duration_since(Instant::now());
    if !rest.is_zero() && timerfd::sleep(rest).await.is_err() {
        // No timerfd (or no I/O driver on this runtime): tokio's timer, late but not early.
        tokio::time::sleep_until(deadline).await;
    }
    // A paused clock did not move during the timerfd's real-time wait.
    if Instant::now() < deadline {
        tokio::time::sleep_until(deadline).await;
    }
}

#[cfg(target_os = "linux")]
mod timerfd {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::time::Duration;

    use tokio::io::Interest;
    use tokio::io::unix::AsyncFd;

    /// Waits `d` on a one-shot monotonic timerfd registered with the runtime's I/O driver.
    pub(super) async fn sleep(d: Duration) -> io::Result<()> {
        // SAFETY: plain syscalls on a descriptor this function creates and owns; `OwnedFd`
        // closes it on every path.
        let fd = unsafe {
            let raw = libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            );
            if raw < 0 {
                return Err(io::Error::last_os_error());
            }
            OwnedFd::from_raw_fd(raw)
        };
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: d.as_secs() as libc::time_t,
                // At least 1 ns: an all-zero value would disarm the timer instead.
                tv_nsec: d.subsec_nanos().max(1) as libc::c_long,
            },
        };
        // SAFETY: `fd` is a valid timerfd and `spec` a valid itimerspec; the old value is not
        // asked for.
        if unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the descriptor is owned by the `AsyncFd` (as an `OwnedFd`), so it stays open
        // for as long as it is registered and is closed only after deregistration.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        loop {
            let mut guard = fd.readable().await?;
            let mut expirations = 0u64;
            // SAFETY: reads the 8-byte expiration count into a u64 it owns.
            let n = unsafe {
                libc::read(
                    fd.get_ref().as_raw_fd(),
                    (&mut expirations as *mut u64).cast(),
                    std::mem::size_of::<u64>(),
                )
            };
            if n == std::mem::size_of::<u64>() as isize {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::WouldBlock {
                return Err(e);
            }
            guard.clear_ready();
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod timerfd {
    use std::io;
    use std::time::Duration;

    pub(super) async fn sleep(_: Duration) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real time, so only a bound that holds on a loaded machine: never early. (How late it is
    // is measured by the benchmark, not asserted.)
    #[tokio::test]
    async fn never_ends_early() {
        for ms in [0, 1, 3, 5] {
            let d = Duration::from_millis(ms);
            let t = std::time::Instant::now();
            sleep(d).await;
            assert!(t.elapsed() >= d, "{ms} ms took {:?}", t.elapsed());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_paused_clock_reaches_the_deadline() {
        let t = Instant::now();
        sleep(Duration::from_secs(30)).await;
        assert!(t.elapsed() >= Duration::from_secs(30));
    }
}
