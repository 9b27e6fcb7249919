//! One simulated member: the real request processor ([`Core`]) with its ZAB core, the log
//! writer's code over a crash-modelling in-memory disk, a clock the simulator sets and
//! background jobs the simulator runs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rand::rngs::StdRng;
use rand::SeedableRng;
use rookery_server::env::Env;
use rookery_server::quorum::{PeerMsg, Transport};
use rookery_server::server::{Core, Event, Io};
use rookery_server::storage::writer::InlineWriter;
use rookery_server::storage::{Backend, MemBackend};
use rookery_server::Config;
use tokio::sync::mpsc;

use super::SimError;

/// The wall clock of every member at simulated time 0 (ms since the epoch): the simulated
/// members agree on the wall clock; only their monotonic clocks matter to the core.
const WALL_START_MS: i64 = 1_800_000_000_000;

/// Capacity of a core's own event queue (background jobs report through it).
const EVENT_QUEUE: usize = 1024;

/// A background job a core asked for.
type Job = Box<dyn FnOnce() + Send>;

/// The members' environment: simulated time, and jobs queued for the simulator.
pub(super) struct SimEnv {
    clock_us: Arc<AtomicU64>,
    jobs: Arc<Mutex<Vec<Job>>>,
}

impl Env for SimEnv {
    fn now_us(&self) -> u64 {
        self.clock_us.load(Ordering::SeqCst)
    }

    fn wall_ms(&self) -> i64 {
        WALL_START_MS + (self.now_us() / 1000) as i64
    }

    fn background(&self, _name: &'static str, job: Job) -> std::io::Result<()> {
        self.jobs.lock().expect("jobs").push(job);
        Ok(())
    }
}

/// What a core sends to its peers, collected for the simulator to deliver: (from, to, message).
pub(super) type Outbox = Arc<Mutex<Vec<(u64, u64, PeerMsg)>>>;

struct SimTransport {
    from: u64,
    outbox: Outbox,
}

impl Transport for SimTransport {
    fn send(&self, to: u64, msg: PeerMsg) {
        self.outbox
            .lock()
            .expect("outbox")
            .push((self.from, to, msg));
    }
}

/// A member's running process.
pub(super) struct Running {
    pub(super) core: Core,
    pub(super) writer: InlineWriter,
    events: mpsc::Receiver<Event>,
    jobs: Arc<Mutex<Vec<Job>>>,
    /// A flush of the writer is scheduled.
    pub(super) flush_due: bool,
    /// A run of the background jobs is scheduled.
    pub(super) jobs_due: bool,
}

impl Running {
    /// Background jobs waiting to run.
    pub(super) fn jobs_waiting(&self) -> bool {
        !self.jobs.lock().expect("jobs").is_empty()
    }

    /// Runs the queued background jobs, then hands the core what they reported.
    pub(super) fn run_jobs(&mut self) {
        let jobs = std::mem::take(&mut *self.jobs.lock().expect("jobs"));
        for job in jobs {
            job();
        }
        while let Ok(ev) = self.events.try_recv() {
            self.core.handle(ev);
        }
    }

    /// Writes and syncs what the core queued, and tells it.
    pub(super) fn flush(&mut self) {
        if let Some(result) = self.writer.flush() {
            self.core.handle(Event::from_sync(result));
        }
    }
}

/// One member: its configuration, its disk (which survives crashes) and its process, if up.
pub(super) struct Member {
    pub(super) id: u64,
    pub(super) cfg: Arc<Config>,
    pub(super) disk: MemBackend,
    /// Counts starts: events addressed to an earlier incarnation are dropped.
    pub(super) incarnation: u64,
    pub(super) running: Option<Running>,
}

impl Member {
    /// Member `id` of `members` (ids 1 to `members`), with an empty disk.
    pub(super) fn new(id: u64, members: usize, snap_count: u64) -> Result<Member, SimError> {
        let mut text = format!(
            "tickTime={}\ninitLimit=10\nsyncLimit=5\ndataDir=/sim/m{id}/data\n\
             dataLogDir=/sim/m{id}/log\nsnapCount={snap_count}\npreAllocSize=64\n\
             clientPort=2181\n",
            super::TICK_TIME_MS
        );
        for m in 1..=members {
            text.push_str(&format!("server.{m}=127.0.0.{m}:2888:3888\n"));
        }
        let mut cfg = Config::parse(&text).map_err(|e| SimError::Setup(e.to_string()))?;
        cfg.set_myid(id)
            .map_err(|e| SimError::Setup(e.to_string()))?;
        Ok(Member {
            id,
            cfg: Arc::new(cfg),
            disk: MemBackend::new(),
            incarnation: 0,
            running: None,
        })
    }

    /// Starts the process over what the disk holds: recovery, the ZAB core, the core.
    pub(super) fn start(
        &mut self,
        seed: u64,
        clock_us: &Arc<AtomicU64>,
        outbox: &Outbox,
    ) -> Result<(), SimError> {
        let cfg = &self.cfg;
        let recovery = |e: rookery_server::storage::StorageError| SimError::Recovery {
            member: self.id,
            error: e.to_string(),
        };
        let recovered = rookery_server::recover(cfg, &self.disk).map_err(recovery)?;
        let backend: Arc<dyn Backend> = Arc::new(self.disk.clone());
        let log = rookery_server::open_log(cfg, backend.clone(), &recovered).map_err(recovery)?;
        let (node, dirs) =
            rookery_server::zab_node(cfg, &recovered, &backend, seed).map_err(|e| {
                SimError::Recovery {
                    member: self.id,
                    error: e.to_string(),
                }
            })?;
        let net = Box::new(SimTransport {
            from: self.id,
            outbox: outbox.clone(),
        });
        let ensemble = rookery_server::ensemble_over(cfg, node, net);
        let (writer, journal) = InlineWriter::new(log, Some(dirs));
        let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
        let jobs: Arc<Mutex<Vec<Job>>> = Arc::default();
        let env = SimEnv {
            clock_us: clock_us.clone(),
            jobs: jobs.clone(),
        };
        let io = Io {
            log: Box::new(journal),
            backend,
            events: events_tx,
            env: Box::new(env),
            rng: StdRng::seed_from_u64(seed ^ 0x5eed),
        };
        let core = Core::new(cfg.clone(), recovered, io, Some(ensemble));
        self.incarnation += 1;
        self.running = Some(Running {
            core,
            writer,
            events,
            jobs,
            flush_due: false,
            jobs_due: false,
        });
        Ok(())
    }

    /// Kills the process: what its writer had not synced is lost, and the disk keeps only what
    /// a power loss would leave of unsynced file writes (decided by `seed`).
    pub(super) fn crash(&mut self, seed: u64) {
        self.running = None;
        self.disk = self.disk.crash(seed);
    }

    /// Whether the process is up.
    pub(super) fn is_up(&self) -> bool {
        self.running.is_some()
    }
}
