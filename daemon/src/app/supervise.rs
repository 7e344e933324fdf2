//! Supervision of the long-running tasks: crash-only.
//!
//! The leadership loop, the leader's duties (engine, poller, outbox, digest) and the SIGHUP
//! reloader are spawned through a [`Supervisor`]. When one of them panics, or returns without
//! having been asked to stop, the supervisor logs an error naming the task (and the panic
//! message) and the whole process stops: intake closes (the HTTP server stops accepting),
//! every other task is cancelled, the PostgreSQL leadership lock is released (and its
//! connection closes when the process exits), and `serve` returns an error, so the process
//! exits non-zero. An orchestrator restarts it and the restart resumes from the store.
//!
//! Why crash-only rather than "stay up and report 503": everything the engine decided is in
//! the store before it acts, and recovery on restart is the path the tests already cover. A
//! process that keeps running with one task dead is a state nothing else exercises: webhooks
//! answered 200 and no engine to handle them, or a PostgreSQL leader that holds the lock while
//! remediating nothing. A fresh process has none of those half-states.
//!
//! [`Faults`] is the test-only seam: tests make a named task panic or return through it, and
//! wrap the store the leader's duties use. Production passes `None`.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::adapters::store::Store;
use crate::adapters::telemetry::panic_message;

/// The long-running tasks of `serve`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Task {
    /// The leadership loop (elects, then runs the duties while leading).
    Leadership,
    /// The engine (a leader duty).
    Engine,
    /// The poller of polled rules (a leader duty, with Prometheus).
    Poller,
    /// The pager outbox (a leader duty).
    Outbox,
    /// The daily digest (a leader duty).
    Digest,
    /// The removal of signals past their retention (a leader duty).
    Retention,
    /// The SIGHUP reloader of rules and policies.
    Reloader,
}

impl Task {
    /// Every task.
    pub const ALL: [Task; 7] = [
        Task::Leadership,
        Task::Engine,
        Task::Poller,
        Task::Outbox,
        Task::Digest,
        Task::Retention,
        Task::Reloader,
    ];

    /// The task's name in logs and errors.
    pub fn as_str(self) -> &'static str {
        match self {
            Task::Leadership => "leadership",
            Task::Engine => "engine",
            Task::Poller => "poller",
            Task::Outbox => "outbox",
            Task::Digest => "digest",
            Task::Retention => "retention",
            Task::Reloader => "reloader",
        }
    }

    /// The task named `s` (its [`Task::as_str`]).
    pub fn parse(s: &str) -> Option<Task> {
        Task::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a long-running task ended when it should not have.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    /// It panicked.
    #[error("the {task} task panicked: {message}")]
    Panicked {
        /// Which task.
        task: Task,
        /// The panic message.
        message: String,
    },
    /// It returned although nothing asked it to stop.
    #[error("the {task} task stopped without being asked to")]
    Returned {
        /// Which task.
        task: Task,
    },
}

impl TaskError {
    /// The task that failed.
    pub fn task(&self) -> Task {
        match self {
            TaskError::Panicked { task, .. } | TaskError::Returned { task } => *task,
        }
    }
}

/// Spawns the long-running tasks and turns the first failure of any into a stop of the process.
pub struct Supervisor {
    /// Cancelled at the first failure.
    failed: CancellationToken,
    /// Cancelled at the first failure too: everything the process runs stops on it.
    stop_all: CancellationToken,
    first: Mutex<Option<TaskError>>,
    faults: Option<Arc<Faults>>,
}

impl Supervisor {
    /// A supervisor that cancels `stop_all` at the first failure; `faults` is the test seam
    /// (`None` in production).
    pub fn new(stop_all: CancellationToken, faults: Option<Arc<Faults>>) -> Arc<Self> {
        Arc::new(Self {
            failed: CancellationToken::new(),
            stop_all,
            first: Mutex::new(None),
            faults,
        })
    }

    /// Spawns `fut` as `task`. `stop` is the token that asks it to stop: ending after it is
    /// cancelled is normal; ending before it, or panicking at any time, is a failure.
    pub fn spawn<F>(
        self: &Arc<Self>,
        task: Task,
        stop: &CancellationToken,
        fut: F,
    ) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let me = self.clone();
        let stop = stop.clone();
        let faults = self.faults.clone();
        tokio::spawn(async move {
            // The panic hook has already logged the panic where it happened; this turns it
            // into the task's failure. Nothing of the task is used after it unwound.
            match AssertUnwindSafe(with_faults(faults, task, fut))
                .catch_unwind()
                .await
            {
                Ok(()) if stop.is_cancelled() => {}
                Ok(()) => me.fail(TaskError::Returned { task }),
                Err(payload) => me.fail(TaskError::Panicked {
                    task,
                    message: panic_message(&*payload),
                }),
            }
        })
    }

    /// Records a failure, logs it, and stops everything.
    fn fail(&self, e: TaskError) {
        tracing::error!(
            task = e.task().as_str(),
            error = %e,
            "A long-running task failed: stopping intake and exiting non-zero (crash-only: a restart resumes from the store)"
        );
        self.first
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(e);
        self.failed.cancel();
        self.stop_all.cancel();
    }

    /// Cancelled at the first failure.
    pub fn failed(&self) -> CancellationToken {
        self.failed.clone()
    }

    /// The first failure, if any.
    pub fn failure(&self) -> Option<TaskError> {
        self.first.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The store the leader's duties use: `store`, or the test seam's wrapper of it.
    pub fn duty_store(&self, store: Arc<dyn Store>) -> Arc<dyn Store> {
        match self.faults.as_ref().and_then(|f| f.duty_store.as_ref()) {
            Some(layer) => layer(store),
            None => store,
        }
    }
}

// === impl Faults ===

/// A fault a test injects into a named task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The task panics.
    Panic,
    /// The task returns as if it had finished.
    Return,
}

/// Wraps the store the leader's duties use (tests: a store whose reads fail).
pub type StoreLayer = Arc<dyn Fn(Arc<dyn Store>) -> Arc<dyn Store> + Send + Sync>;

/// Test-only fault injection; production passes `None` wherever it is taken.
#[derive(Default)]
pub struct Faults {
    armed: Mutex<HashMap<Task, Fault>>,
    changed: Notify,
    duty_store: Option<StoreLayer>,
}

impl Faults {
    /// No fault armed.
    pub fn new() -> Self {
        Self::default()
    }

    /// The leader's duties use `layer(store)` instead of the store.
    pub fn with_duty_store(mut self, layer: StoreLayer) -> Self {
        self.duty_store = Some(layer);
        self
    }

    /// Makes `task` fail with `fault`: at once if it runs, else as soon as it starts. Once.
    pub fn inject(&self, task: Task, fault: Fault) {
        self.armed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(task, fault);
        self.changed.notify_waiters();
    }

    /// Waits until a fault is armed for `task`, and disarms it.
    async fn fired(&self, task: Task) -> Fault {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(f) = self
                .armed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&task)
            {
                return f;
            }
            changed.await;
        }
    }
}

/// Runs `fut`, failing it as `faults` says.
async fn with_faults<F: Future<Output = ()>>(faults: Option<Arc<Faults>>, task: Task, fut: F) {
    let Some(faults) = faults else {
        return fut.await;
    };
    tokio::select! {
        () = fut => {}
        fault = faults.fired(task) => match fault {
            Fault::Panic => panic!("fault injected into the {task} task"),
            Fault::Return => tracing::warn!(task = task.as_str(), "Fault injected: the task returns"),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Bounds every wait here: a missing behaviour fails instead of hanging.
    const WAIT: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn a_panicking_task_is_reported_with_its_name_and_message_and_stops_everything() {
        let stop_all = CancellationToken::new();
        let faults = Arc::new(Faults::new());
        let sup = Supervisor::new(stop_all.clone(), Some(faults.clone()));
        let task_stop = CancellationToken::new();
        let h = sup.spawn(Task::Outbox, &task_stop, std::future::pending());
        faults.inject(Task::Outbox, Fault::Panic);
        tokio::time::timeout(WAIT, h).await.unwrap().unwrap();
        assert!(stop_all.is_cancelled());
        assert!(sup.failed().is_cancelled());
        assert_eq!(
            sup.failure(),
            Some(TaskError::Panicked {
                task: Task::Outbox,
                message: "fault injected into the outbox task".into()
            })
        );
    }

    #[tokio::test]
    async fn a_task_that_returns_unasked_is_a_failure_and_one_asked_to_stop_is_not() {
        let stop_all = CancellationToken::new();
        let sup = Supervisor::new(stop_all.clone(), None);
        let asked = CancellationToken::new();
        asked.cancel();
        let h = sup.spawn(Task::Digest, &asked, async {});
        tokio::time::timeout(WAIT, h).await.unwrap().unwrap();
        assert_eq!(sup.failure(), None);
        assert!(!stop_all.is_cancelled());

        let h = sup.spawn(Task::Reloader, &CancellationToken::new(), async {});
        tokio::time::timeout(WAIT, h).await.unwrap().unwrap();
        assert_eq!(
            sup.failure(),
            Some(TaskError::Returned {
                task: Task::Reloader
            })
        );
        assert!(stop_all.is_cancelled());
    }

    #[tokio::test]
    async fn the_first_failure_is_kept_when_several_tasks_fail() {
        let sup = Supervisor::new(CancellationToken::new(), None);
        let never = CancellationToken::new();
        let h = sup.spawn(Task::Engine, &never, async { panic!("first") });
        tokio::time::timeout(WAIT, h).await.unwrap().unwrap();
        let h = sup.spawn(Task::Poller, &never, async {});
        tokio::time::timeout(WAIT, h).await.unwrap().unwrap();
        assert_eq!(sup.failure().map(|e| e.task()), Some(Task::Engine));
    }

    #[test]
    fn task_names_parse_back() {
        for t in Task::ALL {
            assert_eq!(Task::parse(t.as_str()), Some(t));
        }
        assert_eq!(Task::parse("nope"), None);
    }
}
