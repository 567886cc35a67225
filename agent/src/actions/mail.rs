//! The mail kinds (a mail host's Dovecot, through [`crate::mail`]):
//! `mail_search`; `soft_delete_email`, `move_to_junk`, `move_to_inbox` (one
//! batch mover, three destinations); `restore_email`, their undo. They are
//! advertised only when the agent's configuration has a `[mail]` section.

use picket_common::actions::mail::{self, MailBatchOutput, MailSearchOutput};
use picket_common::actions::ActionKind;

use super::{Action, ActionFailure, Run};
use crate::mail::{batch, search, MailHost};
use crate::platform::Feature;

fn host<'a>(run: &Run<'a>) -> Result<&'a MailHost, ActionFailure> {
    run.ctx.mail.as_deref().ok_or_else(|| ActionFailure {
        reason: picket_common::actions::FailureReason::Unsupported,
        message: "this agent has no [mail] configuration: it is not a mail host".into(),
    })
}

/// Progress of a batch, by users done.
fn progress<'a>(run: &'a Run<'a>) -> impl Fn(usize, usize) + 'a {
    move |done, all| run.progress.report("moving messages", u8::try_from(done * 100 / all.max(1)).unwrap_or(100))
}

pub struct MailSearch;

impl Action for MailSearch {
    const KIND: ActionKind = ActionKind::MailSearch;
    const NEEDS: &'static [Feature] = &[Feature::Mail];
    type Params = mail::MailSearch;
    type Output = MailSearchOutput;

    fn run(&self, p: mail::MailSearch, run: &Run<'_>) -> Result<MailSearchOutput, ActionFailure> {
        search::search(&host(run)?.doveadm, &p).map_err(|e| ActionFailure::error(e.to_string()))
    }
}

/// Where each move kind puts messages.
fn destination(kind: ActionKind, host: &MailHost) -> String {
    match kind {
        ActionKind::SoftDeleteEmail => host.config.recoverable_mailbox.clone(),
        ActionKind::MoveToJunk => host.config.junk_mailbox.clone(),
        _ => "INBOX".into(),
    }
}

fn move_batch(kind: ActionKind, p: &mail::MailMessages, run: &Run<'_>) -> Result<MailBatchOutput, ActionFailure> {
    let host = host(run)?;
    let to = destination(kind, host);
    let id = run.progress.action_id();
    batch::move_messages(&host.doveadm, &host.records, id, kind.as_str(), p, &to, &progress(run))
        .map_err(ActionFailure::error)
}

pub struct SoftDeleteEmail;

impl Action for SoftDeleteEmail {
    const KIND: ActionKind = ActionKind::SoftDeleteEmail;
    const NEEDS: &'static [Feature] = &[Feature::Mail];
    type Params = mail::MailMessages;
    type Output = MailBatchOutput;

    fn run(&self, p: mail::MailMessages, run: &Run<'_>) -> Result<MailBatchOutput, ActionFailure> {
        move_batch(Self::KIND, &p, run)
    }
}

pub struct MoveToJunk;

impl Action for MoveToJunk {
    const KIND: ActionKind = ActionKind::MoveToJunk;
    const NEEDS: &'static [Feature] = &[Feature::Mail];
    type Params = mail::MailMessages;
    type Output = MailBatchOutput;

    fn run(&self, p: mail::MailMessages, run: &Run<'_>) -> Result<MailBatchOutput, ActionFailure> {
        move_batch(Self::KIND, &p, run)
    }
}

pub struct MoveToInbox;

impl Action for MoveToInbox {
    const KIND: ActionKind = ActionKind::MoveToInbox;
    const NEEDS: &'static [Feature] = &[Feature::Mail];
    type Params = mail::MailMessages;
    type Output = MailBatchOutput;

    fn run(&self, p: mail::MailMessages, run: &Run<'_>) -> Result<MailBatchOutput, ActionFailure> {
        move_batch(Self::KIND, &p, run)
    }
}

pub struct RestoreEmail;

impl Action for RestoreEmail {
    const KIND: ActionKind = ActionKind::RestoreEmail;
    const NEEDS: &'static [Feature] = &[Feature::Mail];
    type Params = mail::RestoreEmail;
    type Output = MailBatchOutput;

    fn run(&self, p: mail::RestoreEmail, run: &Run<'_>) -> Result<MailBatchOutput, ActionFailure> {
        let host = host(run)?;
        let id = run.progress.action_id();
        batch::restore(&host.doveadm, &host.records, id, p.record_id, p.undo_of, &progress(run))
            .map_err(ActionFailure::error)
    }
}
