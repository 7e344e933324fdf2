//! The engine's long-running loop: a pass, then a wait for a wake-up (signals stored, an action
//! or probe finished, the tick) or cancellation; on shutdown, a bounded wait for the actions in
//! flight. Also the rounds that harnesses drive themselves (`remedyd test`, the model test).

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Engine;
use crate::adapters::store::StoreError;

// === impl Engine: tasks ===

impl Engine {
    /// Runs until cancelled. Actions in flight are tracked by `tasks` so shutdown can wait.
    pub async fn run(mut self, cancel: CancellationToken, tasks: TaskTracker) {
        if let Err(e) = self.recover().await {
            // Retried at the start of every pass until it succeeds: until then the steps a dead
            // process left running would hold their incidents.
            self.recover_pending = true;
            tracing::error!(error = %e, "Recovery from the store failed; will retry on the next pass");
        }
        loop {
            if let Err(e) = self.pass(&tasks).await {
                self.metrics.store_error("engine");
                tracing::warn!(error = %e, "Engine pass failed; retrying");
            } else {
                self.metrics.engine_passed(self.clock.now());
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.wake.notified() => {}
                Some(msg) = self.done_rx.recv() => {
                    if let Err(e) = self.handle(msg).await {
                        self.metrics.store_error("finish");
                        tracing::error!(error = %e, "Recording a finished step or probe failed; a step's result is written again on the next pass, a probe is run again");
                    }
                }
                _ = tokio::time::sleep(self.config.tick) => {}
            }
        }
        // No new step starts. Wait (bounded) for the ones in flight so that their results are
        // recorded; what is still running at the deadline resumes as "interrupted" on restart.
        let deadline = tokio::time::Instant::now() + self.config.shutdown;
        while !self.running.is_empty() || !self.probing.is_empty() {
            match tokio::time::timeout_at(deadline, self.done_rx.recv()).await {
                Ok(Some(msg)) => {
                    let _ = self.handle(msg).await;
                }
                _ => {
                    tracing::warn!(
                        running = self.running.len(),
                        "Shutdown deadline passed with actions in flight; they are recovered as interrupted on restart"
                    );
                    break;
                }
            }
        }
        while let Ok(msg) = self.done_rx.try_recv() {
            let _ = self.handle(msg).await;
        }
    }

    /// One synchronous round for `remedyd test` and simulations: a pass, then wait for the
    /// actions and probes it started and record their results, then another pass.
    pub async fn settle(&mut self, tasks: &TaskTracker) -> Result<(), StoreError> {
        for _ in 0..4 {
            self.pass(tasks).await?;
            tasks.close();
            tasks.wait().await;
            tasks.reopen();
            let mut any = false;
            while let Ok(msg) = self.done_rx.try_recv() {
                self.handle(msg).await?;
                any = true;
            }
            if !any {
                break;
            }
        }
        Ok(())
    }

    /// Records the results of the steps and probes that have already finished, without waiting
    /// for the others; returns how many. For harnesses that drive passes themselves and whose
    /// actions may hang (the model-based test), where [`Self::settle`] would wait for ever.
    pub async fn record_finished(&mut self) -> Result<usize, StoreError> {
        let mut n = 0;
        while let Ok(msg) = self.done_rx.try_recv() {
            self.handle(msg).await?;
            n += 1;
        }
        Ok(n)
    }

    /// What [`Self::run`] does first: steps left running by a previous process are recorded as
    /// interrupted. For harnesses that drive passes themselves (the model-based test).
    pub async fn recover_interrupted(&mut self) -> Result<(), StoreError> {
        self.recover().await
    }
}
