//! An action's life: its statuses and the one table of the steps between
//! them. Every status change names a [`Step`]; [`super::Store::transition`]
//! moves the row only if it is in one of the step's `from` statuses, so the
//! allowed moves are written here and nowhere else.
//!
//! ```text
//!                 ┌─ reject ─→ rejected
//!                 ├─ expire ─→ expired
//! pending_approval ─ approve → approved ─ queue ─→ queued ─ send ─→ sent
//!                                          │               │
//!   (created queued when no approval is    ├─ time_out ──→ timed_out
//!    needed)                               └─ cancel ────→ cancelled
//! queued | sent | cancelled ─ start ─→ running
//! queued | sent | running | cancelled | timed_out ─ succeed/fail ─→ succeeded/failed
//! ```
//!
//! The agent is the authority on what ran: its start and its result land
//! even on an action the coordinator had marked cancelled or timed out
//! meanwhile.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionStatus {
    PendingApproval,
    Approved,
    Queued,
    Sent,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Rejected,
    Expired,
    Cancelled,
}

impl ActionStatus {
    pub const ALL: [ActionStatus; 11] = [
        Self::PendingApproval,
        Self::Approved,
        Self::Queued,
        Self::Sent,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::TimedOut,
        Self::Rejected,
        Self::Expired,
        Self::Cancelled,
    ];
    /// Statuses in which an action is still live (the dedupe set).
    pub const LIVE: [ActionStatus; 5] =
        [Self::PendingApproval, Self::Approved, Self::Queued, Self::Sent, Self::Running];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingApproval => "pending_approval",
            Self::Approved => "approved",
            Self::Queued => "queued",
            Self::Sent => "sent",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
            Self::Rejected => "rejected",
            Self::Expired => "expired",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// One move of an action's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// An approver said yes.
    Approve,
    /// Approved, waiting for its device.
    Queue,
    /// Framed to the device's session.
    Send,
    /// The agent began running it.
    Start,
    /// The agent's result: it worked.
    Succeed,
    /// The agent's result: it failed.
    Fail,
    /// A person, or the agent before it started, cancelled it.
    Cancel,
    /// An approver said no.
    Reject,
    /// Nobody decided before the deadline.
    Expire,
    /// Its device stayed offline past the deadline.
    TimeOut,
}

use ActionStatus as S;

/// What the agent may still report on: everything it may have received.
const REPORTABLE: &[ActionStatus] = &[S::Queued, S::Sent, S::Running, S::Cancelled, S::TimedOut];

impl Step {
    pub const ALL: [Step; 10] = [
        Self::Approve,
        Self::Queue,
        Self::Send,
        Self::Start,
        Self::Succeed,
        Self::Fail,
        Self::Cancel,
        Self::Reject,
        Self::Expire,
        Self::TimeOut,
    ];

    /// The table: the statuses a step starts from, and where it leads.
    pub fn rule(self) -> (&'static [ActionStatus], ActionStatus) {
        match self {
            Self::Approve => (&[S::PendingApproval], S::Approved),
            Self::Queue => (&[S::Approved], S::Queued),
            Self::Send => (&[S::Queued], S::Sent),
            Self::Start => (&[S::Queued, S::Sent, S::Cancelled], S::Running),
            Self::Succeed => (REPORTABLE, S::Succeeded),
            Self::Fail => (REPORTABLE, S::Failed),
            Self::Cancel => (&[S::Queued, S::Sent], S::Cancelled),
            Self::Reject => (&[S::PendingApproval], S::Rejected),
            Self::Expire => (&[S::PendingApproval], S::Expired),
            Self::TimeOut => (&[S::Queued, S::Sent], S::TimedOut),
        }
    }

    pub fn from(self) -> &'static [ActionStatus] {
        self.rule().0
    }

    pub fn to(self) -> ActionStatus {
        self.rule().1
    }

    /// Whether `steps` chain: each starts where the one before led.
    pub fn chain(steps: &[Step]) -> bool {
        !steps.is_empty() && steps.windows(2).all(|w| w[1].from().contains(&w[0].to()))
    }
}

/// One step of a transition, with who took it and why (one event each).
#[derive(Debug, Clone, Copy)]
pub struct Move<'a> {
    pub step: Step,
    pub actor: &'a str,
    pub comment: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_statuses_have_no_way_out_but_the_agents_report() {
        let finals = [S::Succeeded, S::Failed, S::Rejected, S::Expired];
        for step in Step::ALL {
            assert!(finals.iter().all(|f| !step.from().contains(f)), "{step:?} leaves a final status");
        }
        // Cancelled and timed out are final for people, not for the agent.
        let out_of_cancelled: Vec<Step> = Step::ALL.into_iter().filter(|s| s.from().contains(&S::Cancelled)).collect();
        assert_eq!(out_of_cancelled, [Step::Start, Step::Succeed, Step::Fail]);
        for status in ActionStatus::ALL {
            let live = ActionStatus::LIVE.contains(&status);
            let leads_on = Step::ALL.into_iter().any(|s| s.from().contains(&status));
            assert!(!live || leads_on, "{status:?} is live but nothing leads out of it");
        }
    }

    #[test]
    fn approval_chains_to_delivery_and_nothing_skips_approval() {
        assert!(Step::chain(&[Step::Approve, Step::Queue, Step::Send, Step::Start, Step::Succeed]));
        assert!(!Step::chain(&[Step::Approve, Step::Send]));
        assert!(!Step::chain(&[]));
        let out_of_pending: Vec<Step> =
            Step::ALL.into_iter().filter(|s| s.from().contains(&S::PendingApproval)).collect();
        assert_eq!(out_of_pending, [Step::Approve, Step::Reject, Step::Expire]);
    }
}
