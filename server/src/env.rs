//! What the request processor ([`crate::server::Core`]) takes from the world besides its events:
//! the time and somewhere to run slow work.
//!
//! The core never reads a clock or starts a thread itself. The server gives it [`SystemEnv`];
//! the whole-member simulator (`history/src/sim`) gives it an environment whose clock only moves
//! when the simulator says so and whose background jobs run when the simulator picks them, so a
//! seed replays a run of clients, request processors, ZAB and disks exactly. Randomness is the
//! other input: the core draws from the [`rand::rngs::StdRng`] it is built with.

use std::sync::Arc;

/// Time and background work, as the request processor sees them.
pub trait Env: Send + 'static {
    /// Monotonic microseconds since a fixed start.
    fn now_us(&self) -> u64;

    /// Monotonic milliseconds since the same start: session deadlines, ticks, purges.
    fn now_ms(&self) -> u64 {
        self.now_us() / 1000
    }

    /// Wall-clock milliseconds since the epoch. Only stamps: a transaction's time (a node's
    /// ctime and mtime), connection statistics. No decision depends on it.
    fn wall_ms(&self) -> i64;

    /// Runs `job` away from the request processor (a snapshot write, a purge). The job reports
    /// back, if at all, through the core's event queue. An error means the job will never run.
    fn background(&self, name: &'static str, job: Box<dyn FnOnce() + Send>) -> std::io::Result<()>;
}

/// The real clocks, and a thread per background job.
#[derive(Debug, Clone)]
pub struct SystemEnv {
    started: tokio::time::Instant,
}

impl SystemEnv {
    /// Monotonic time counts from now.
    pub fn new() -> SystemEnv {
        SystemEnv {
            started: tokio::time::Instant::now(),
        }
    }
}

impl Default for SystemEnv {
    fn default() -> Self {
        SystemEnv::new()
    }
}

/// Wall-clock ms since the epoch (0 if the clock is before it).
pub fn system_wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Env for SystemEnv {
    fn now_us(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    fn wall_ms(&self) -> i64 {
        system_wall_ms()
    }

    fn background(&self, name: &'static str, job: Box<dyn FnOnce() + Send>) -> std::io::Result<()> {
        std::thread::Builder::new()
            .name(name.into())
            .spawn(job)
            .map(drop)
    }
}

/// A shared environment is an environment (the simulator keeps one handle and gives the core
/// another).
impl<E: Env + Sync> Env for Arc<E> {
    fn now_us(&self) -> u64 {
        (**self).now_us()
    }

    fn wall_ms(&self) -> i64 {
        (**self).wall_ms()
    }

    fn background(&self, name: &'static str, job: Box<dyn FnOnce() + Send>) -> std::io::Result<()> {
        (**self).background(name, job)
    }
}
