//! Running actions: the executor ties the journal, the platform and the
//! session together.
//!
//! Each kind is one file implementing [`Action`] — its typed parameters
//! and output (from `picket_common::actions::{params, results}`), the
//! platform [`Feature`]s it needs, how it runs — registered by one row in
//! [`table::TABLE`]. The kinds advertised in `Hello` are the table's rows
//! whose needs the platform meets; the executor looks a kind up there and
//! has no per-kind code.
//!
//! Life of an action on the device:
//! 1. `CoordMsg::Action` arrives → known id? resend its result if finished,
//!    else ignore (it is in progress). New id → journal `received` (fsync).
//! 2. A slot frees (at most [`MAX_CONCURRENT`] actions run at once) →
//!    journal `running` (fsync) → `ActionStarted` → run on a blocking thread.
//! 3. Journal `finished` + outcome (fsync) → `ActionResult`, repeated on each
//!    reconnect until `ResultAck`.
//!
//! `Cancel` succeeds only in step 1 (received, not running). At start,
//! [`Executor::recover`] finishes what a crash interrupted.

mod collect_evidence;
mod collect_package;
mod delete_file;
pub mod isolate;
mod kill_process;
mod mail;
mod offboard;
mod persisted;
mod release_code;
mod release_from_quarantine;
mod release_isolation;
mod remove_persistence;
mod request_sample;
mod restore_persistence;
pub mod restrict_code;
mod scan;
mod stop_and_quarantine;
pub mod table;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use picket_common::actions::{ActionKind, ActionOutcome, ActionRequest, ActionResult, FailureReason};
use picket_common::proto::AgentMsg;
use tokio::sync::{mpsc, Semaphore};
use tracing::Instrument;

use crate::clock::now_rfc3339;
use crate::journal::{Entry, EntryState, Journal, JournalError};
use crate::platform::{Feature, Platform, PlatformError};
pub use persisted::Persisted;

/// Actions that may run at the same time.
pub const MAX_CONCURRENT: usize = 4;

/// Why an action failed, as reported to the coordinator.
#[derive(Debug)]
pub struct ActionFailure {
    pub reason: FailureReason,
    pub message: String,
}

impl ActionFailure {
    pub fn invalid(m: impl Into<String>) -> Self {
        Self { reason: FailureReason::InvalidParams, message: m.into() }
    }

    pub fn error(m: impl Into<String>) -> Self {
        Self { reason: FailureReason::Error, message: m.into() }
    }
}

impl From<PlatformError> for ActionFailure {
    fn from(e: PlatformError) -> Self {
        let reason = match &e {
            PlatformError::Unsupported(_) => FailureReason::Unsupported,
            PlatformError::Invalid(_) => FailureReason::InvalidParams,
            PlatformError::Failed(_) => FailureReason::Error,
        };
        Self { reason, message: e.to_string() }
    }
}

/// What actions need to know about this agent.
#[derive(Clone)]
pub struct Context {
    pub state_dir: std::path::PathBuf,
    /// `HOST:PORT` of the coordinator (kept reachable by isolation).
    pub coordinator: String,
    /// The rules and indicators scans use.
    pub content: Arc<crate::content::Content>,
    /// Where detections go.
    pub alerts: Arc<crate::alerts::AlertQueue>,
    /// Sends files to the coordinator.
    pub uploader: Arc<crate::upload::Uploader>,
    /// Quarantined files.
    pub vault: Arc<crate::quarantine::Vault>,
    /// Root of the persistence places (`/`; a test tree in tests).
    pub persistence_root: std::path::PathBuf,
    /// Mounts restrict_code watches (empty: every local file system).
    pub restrict_scope: Vec<std::path::PathBuf>,
    /// This device's own search scope for copies (overrides the coordinator's).
    pub evidence_search_paths: Vec<std::path::PathBuf>,
    /// This device (named in every action's log span).
    pub device_id: uuid::Uuid,
    /// The local mail server, on a mail host.
    pub mail: Option<Arc<crate::mail::MailHost>>,
}

impl Context {
    /// What this agent can do: the platform's features, and mail on a mail host.
    pub fn features(&self, platform: &dyn Platform) -> Vec<Feature> {
        let mut features = platform.features();
        if self.mail.is_some() {
            features.push(Feature::Mail);
        }
        features
    }
}

/// Progress reports of one running action (dropped while offline).
pub struct Progress {
    action_id: uuid::Uuid,
    out: mpsc::Sender<AgentMsg>,
}

impl Progress {
    pub fn action_id(&self) -> uuid::Uuid {
        self.action_id
    }

    pub fn report(&self, phase: &str, percent: u8) {
        let msg =
            AgentMsg::ActionProgress { action_id: self.action_id, phase: phase.to_string(), percent: percent.min(100) };
        let _ = self.out.try_send(msg);
    }
}

/// What an action gets to run: the platform, the agent's context, and its
/// progress reporter.
pub struct Run<'a> {
    pub platform: &'a dyn Platform,
    pub ctx: &'a Context,
    pub progress: &'a Progress,
}

/// One action kind on the agent.
pub trait Action: Sync + 'static {
    const KIND: ActionKind;
    /// What the platform must offer for the kind to be advertised and run.
    const NEEDS: &'static [Feature];
    type Params: serde::de::DeserializeOwned;
    type Output: serde::Serialize;
    /// Run it, on a blocking thread. The parameters passed the same
    /// `params::check` the coordinator made.
    fn run(&self, params: Self::Params, run: &Run<'_>) -> Result<Self::Output, ActionFailure>;
}

/// The table's face of an [`Action`]: parameters in and output out as JSON.
pub trait Registered: Sync {
    fn kind(&self) -> ActionKind;
    fn needs(&self) -> &'static [Feature];
    fn execute(&self, params: &str, run: &Run<'_>) -> Result<String, ActionFailure>;
}

impl<A: Action> Registered for A {
    fn kind(&self) -> ActionKind {
        A::KIND
    }

    fn needs(&self) -> &'static [Feature] {
        A::NEEDS
    }

    fn execute(&self, params: &str, run: &Run<'_>) -> Result<String, ActionFailure> {
        // The same check the coordinator makes: whatever sent this, nothing
        // malformed reaches a handler.
        picket_common::actions::params::check(A::KIND, params).map_err(ActionFailure::invalid)?;
        let p = picket_common::actions::params::parse(A::KIND, params).map_err(ActionFailure::invalid)?;
        let output = self.run(p, run)?;
        serde_json::to_string(&output).map_err(|e| ActionFailure::error(format!("cannot encode the result: {e}")))
    }
}

/// Run one action of `kind` (on a blocking thread).
fn execute(
    platform: &dyn Platform,
    ctx: &Context,
    kind: ActionKind,
    params: &str,
    progress: &Progress,
) -> ActionOutcome {
    let features = ctx.features(platform);
    let result = match table::find(kind) {
        Some(action) if action.needs().iter().all(|f| features.contains(f)) => {
            action.execute(params, &Run { platform, ctx, progress })
        }
        _ => Err(ActionFailure {
            reason: FailureReason::Unsupported,
            message: format!("{kind} is not available on this agent"),
        }),
    };
    match result {
        Ok(output_json) => ActionOutcome::Succeeded { output_json },
        Err(f) => ActionOutcome::Failed { reason: f.reason, error: f.message },
    }
}

pub struct Executor {
    journal: Journal,
    platform: Arc<dyn Platform>,
    context: Context,
    /// Frames for the current session; dropped while offline (results are in
    /// the journal and replayed on reconnect).
    out: mpsc::Sender<AgentMsg>,
    slots: Arc<Semaphore>,
    /// Ids between `received` and `finished` in this process; guards the
    /// received → running / received → cancelled race.
    in_flight: Mutex<HashSet<uuid::Uuid>>,
    /// Set when the coordinator acknowledged a successful offboard.
    offboarded: std::sync::atomic::AtomicBool,
}

impl Executor {
    pub fn new(
        journal: Journal,
        platform: Arc<dyn Platform>,
        context: Context,
        out: mpsc::Sender<AgentMsg>,
    ) -> Arc<Self> {
        Arc::new(Self {
            journal,
            platform,
            context,
            out,
            slots: Arc::new(Semaphore::new(MAX_CONCURRENT)),
            in_flight: Mutex::new(HashSet::new()),
            offboarded: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The span every log line about one action is written in: its id,
    /// kind and device (the coordinator's span has the same fields).
    fn span(&self, id: uuid::Uuid, kind: ActionKind) -> tracing::Span {
        tracing::info_span!("action", id = %id, kind = %kind, device = %self.context.device_id)
    }

    pub fn capabilities(&self) -> Vec<String> {
        table::capabilities(&self.context.features(self.platform.as_ref()))
            .iter()
            .map(|k| k.as_str().to_string())
            .collect()
    }

    /// Finish what a crash interrupted: `running` entries become `failed:
    /// interrupted` (or run again when their kind is re-runnable); `received`
    /// entries never started, so they run now.
    pub async fn recover(self: &Arc<Self>) -> Result<(), JournalError> {
        let journal = self.journal.clone();
        let entries = tokio::task::spawn_blocking(move || journal.all()).await.map_err(join_err)??;
        for entry in entries {
            match entry.state {
                EntryState::Finished => {}
                EntryState::Received => self.start(entry),
                EntryState::Running if entry.kind.rerunnable() => {
                    self.span(entry.action_id, entry.kind)
                        .in_scope(|| tracing::warn!("re-running an action a restart interrupted"));
                    self.start(entry);
                }
                EntryState::Running => {
                    let span = self.span(entry.action_id, entry.kind);
                    span.in_scope(|| tracing::warn!("an action was interrupted by a restart; reporting it failed"));
                    let outcome = ActionOutcome::Failed {
                        reason: FailureReason::Interrupted,
                        error: "the agent stopped while the action ran; it was not run again".into(),
                    };
                    self.finish(entry, outcome).instrument(span).await;
                }
            }
        }
        Ok(())
    }

    /// A request from the coordinator (possibly a repeat).
    pub async fn submit(self: &Arc<Self>, req: ActionRequest) {
        let journal = self.journal.clone();
        let id = req.action_id;
        let known = tokio::task::spawn_blocking(move || journal.get(id)).await.map_err(join_err);
        match known {
            Ok(Ok(Some(entry))) => {
                if entry.state == EntryState::Finished && !entry.acked {
                    self.send_result(&entry);
                }
                // received or running: it is in progress here; nothing to do.
            }
            Ok(Ok(None)) => {
                let entry = Entry {
                    action_id: id,
                    kind: req.kind,
                    params_json: req.params_json,
                    state: EntryState::Received,
                    outcome: None,
                    acked: false,
                    updated_at: now_rfc3339(),
                };
                if self.write(entry.clone()).await {
                    self.span(id, entry.kind).in_scope(|| tracing::info!("action received"));
                    self.start(entry);
                }
            }
            Ok(Err(error)) | Err(error) => {
                tracing::error!(%error, action = %id, "cannot read the journal; the coordinator will resend")
            }
        }
    }

    /// Cancel an action that has not started.
    pub async fn cancel(self: &Arc<Self>, id: uuid::Uuid) {
        let journal = self.journal.clone();
        let Ok(Ok(Some(entry))) = tokio::task::spawn_blocking(move || journal.get(id)).await else {
            tracing::info!(action = %id, "cancel for an unknown action ignored");
            return;
        };
        let cancellable = {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            // Claim it so the runner cannot start it meanwhile.
            entry.state == EntryState::Received && in_flight.remove(&id)
        };
        let span = self.span(id, entry.kind);
        if cancellable {
            span.in_scope(|| tracing::info!("action cancelled before it started"));
            self.finish(entry, ActionOutcome::Cancelled).instrument(span).await;
        } else {
            span.in_scope(|| tracing::info!(state = ?entry.state, "too late to cancel"));
        }
    }

    /// The coordinator stored the result: drop it from the outbox.
    pub async fn acked(self: &Arc<Self>, id: uuid::Uuid) {
        let journal = self.journal.clone();
        let done = tokio::task::spawn_blocking(move || -> Result<Option<Entry>, JournalError> {
            let Some(mut entry) = journal.get(id)? else { return Ok(None) };
            if !entry.acked {
                entry.acked = true;
                journal.record(&entry)?;
            }
            Ok(Some(entry))
        })
        .await;
        match done {
            Ok(Ok(Some(entry))) => {
                let succeeded = matches!(entry.outcome, Some(ActionOutcome::Succeeded { .. }));
                if entry.kind == ActionKind::Offboard && succeeded {
                    self.offboarded.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            }
            Ok(Ok(None)) => {}
            _ => tracing::warn!(action = %id, "cannot record the acknowledgement; the result may be sent again"),
        }
    }

    /// Whether the coordinator has acknowledged this device's offboarding.
    pub fn is_offboarded(&self) -> bool {
        self.offboarded.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Resend every finished, unacknowledged result (after a reconnect).
    pub async fn replay_outbox(self: &Arc<Self>) {
        let journal = self.journal.clone();
        let Ok(Ok(entries)) = tokio::task::spawn_blocking(move || journal.all()).await else { return };
        for entry in entries.iter().filter(|e| e.state == EntryState::Finished && !e.acked) {
            self.send_result(entry);
        }
        let journal = self.journal.clone();
        tokio::task::spawn_blocking(move || journal.prune(std::time::Duration::from_secs(24 * 3600)));
    }

    fn start(self: &Arc<Self>, entry: Entry) {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner()).insert(entry.action_id);
        let span = self.span(entry.action_id, entry.kind);
        let this = self.clone();
        let task = async move {
            let Ok(_slot) = this.slots.clone().acquire_owned().await else { return };
            let id = entry.action_id;
            // Still ours? (a cancel may have claimed it while it waited)
            if !this.in_flight.lock().unwrap_or_else(|p| p.into_inner()).remove(&id) {
                return;
            }
            let running = Entry { state: EntryState::Running, updated_at: now_rfc3339(), ..entry };
            if !this.write(running.clone()).await {
                return;
            }
            let _ = this.out.try_send(AgentMsg::ActionStarted { action_id: id });
            tracing::info!("action running");
            let (platform, ctx) = (this.platform.clone(), this.context.clone());
            let (kind, params) = (running.kind, running.params_json.clone());
            let progress = Progress { action_id: id, out: this.out.clone() };
            let span = tracing::Span::current();
            let outcome = tokio::task::spawn_blocking(move || {
                span.in_scope(|| execute(platform.as_ref(), &ctx, kind, &params, &progress))
            })
            .await
            .unwrap_or_else(|e| ActionOutcome::Failed {
                reason: FailureReason::Error,
                error: format!("the action panicked: {e}"),
            });
            this.finish(running, outcome).await;
        };
        tokio::spawn(task.instrument(span));
    }

    async fn finish(&self, entry: Entry, outcome: ActionOutcome) {
        let finished =
            Entry { state: EntryState::Finished, outcome: Some(outcome), updated_at: now_rfc3339(), ..entry };
        if self.write(finished.clone()).await {
            tracing::info!(outcome = ?finished.outcome, "action finished");
            self.send_result(&finished);
        }
    }

    fn send_result(&self, entry: &Entry) {
        if let Some(outcome) = &entry.outcome {
            let msg = AgentMsg::ActionResult(ActionResult { action_id: entry.action_id, outcome: outcome.clone() });
            if self.out.try_send(msg).is_err() {
                tracing::debug!(action = %entry.action_id, "offline or busy: the result waits in the outbox");
            }
        }
    }

    async fn write(&self, entry: Entry) -> bool {
        let journal = self.journal.clone();
        let id = entry.action_id;
        match tokio::task::spawn_blocking(move || journal.record(&entry)).await.map_err(join_err) {
            Ok(Ok(())) => true,
            Ok(Err(error)) | Err(error) => {
                tracing::error!(%error, action = %id, "cannot write the journal");
                false
            }
        }
    }
}

fn join_err(e: tokio::task::JoinError) -> JournalError {
    JournalError::from_io(std::path::PathBuf::from("<task>"), std::io::Error::other(e.to_string()))
}
