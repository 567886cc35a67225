//! The mail kinds (a mail host's Dovecot, through [`crate::mail`]):
//! `mail_search`; `soft_delete_email`, `move_to_junk`, `move_to_inbox` (one
//! batch mover, three destinations) and `restore_email`, their undo;
//! `quarantine_email` (into the quarantine account) and `release_email`,
//! its undo; `quarantine_attachment` (released the same way);
//! `hard_delete_email`; `mail_scan`; `mail_forwarding`,
//! `disable_external_forwarding` and `restore_forwarding`, its undo. They
//! are advertised only when the agent's configuration has a `[mail]`
//! section.

use picket_common::actions::mail::{self, MailBatchOutput, MailSearchOutput};
use picket_common::actions::ActionKind;

use super::{Action, ActionFailure, Run};
use crate::mail::{batch::Route, search, MailHost};
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
        let host = host(run)?;
        search::search(&host.doveadm, &p, &host.config.quarantine_account)
            .map_err(|e| ActionFailure::error(e.to_string()))
    }
}

/// Where each batch kind puts messages: a folder, and the accounts.
fn destination(kind: ActionKind, host: &MailHost) -> (String, Route) {
    match kind {
        ActionKind::SoftDeleteEmail => (host.config.recoverable_mailbox.clone(), Route::default()),
        ActionKind::MoveToJunk => (host.config.junk_mailbox.clone(), Route::default()),
        // The folder there is named after each message's user.
        ActionKind::QuarantineEmail => (String::new(), Route::into_quarantine(&host.config.quarantine_account)),
        ActionKind::HardDeleteEmail => (String::new(), Route::expunge()),
        _ => ("INBOX".into(), Route::default()),
    }
}

fn move_batch(kind: ActionKind, p: &mail::MailMessages, run: &Run<'_>) -> Result<MailBatchOutput, ActionFailure> {
    let host = host(run)?;
    if kind == ActionKind::QuarantineEmail {
        host.check_quarantine().map_err(ActionFailure::error)?;
    }
    let (to, route) = destination(kind, host);
    let id = run.progress.action_id();
    host.batches().move_messages(id, kind.as_str(), p, &to, route, &progress(run)).map_err(ActionFailure::error)
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
        restore(Self::KIND, p, run)
    }
}

fn restore(kind: ActionKind, p: mail::RestoreEmail, run: &Run<'_>) -> Result<MailBatchOutput, ActionFailure> {
    let host = host(run)?;
    let id = run.progress.action_id();
    host.batches().restore(id, kind.as_str(), p.record_id, p.undo_of, &progress(run)).map_err(ActionFailure::error)
}

pub struct QuarantineEmail;

impl Action for QuarantineEmail {
    const KIND: ActionKind = ActionKind::QuarantineEmail;
    const NEEDS: &'static [Feature] = &[Feature::Mail];
    type Params = mail::MailMessages;
    type Output = MailBatchOutput;

    fn run(&self, p: mail::MailMessages, run: &Run<'_>) -> Result<MailBatchOutput, ActionFailure> {
        move_batch(Self::KIND, &p, run)
    }
}

pub struct ReleaseEmail;

impl Action for ReleaseEmail {
    const KIND: ActionKind = ActionKind::ReleaseEmail;
    const NEEDS: &'static [Feature] = &[Feature::Mail];
    type Params = mail::RestoreEmail;
    type Output = MailBatchOutput;

    fn run(&self, p: mail::RestoreEmail, run: &Run<'_>) -> Result<MailBatchOutput, ActionFailure> {
        restore(Self::KIND, p, run)
    }
}

pub struct HardDeleteEmail;

impl Action for HardDeleteEmail {
    const KIND: ActionKind = ActionKind::HardDeleteEmail;
    const NEEDS: &'static [Feature] = &[Feature::Mail];
    type Params = mail::MailMessages;
    type Output = MailBatchOutput;

    fn run(&self, p: mail::MailMessages, run: &Run<'_>) -> Result<MailBatchOutput, ActionFailure> {
        move_batch(Self::KIND, &p, run)
    }
}

pub struct QuarantineAttachment;

impl Action for QuarantineAttachment {
    const KIND: ActionKind = ActionKind::QuarantineAttachment;
    const NEEDS: &'static [Feature] = &[Feature::Mail];
    type Params = mail::QuarantineAttachment;
    type Output = MailBatchOutput;

    fn run(&self, p: mail::QuarantineAttachment, run: &Run<'_>) -> Result<MailBatchOutput, ActionFailure> {
        let host = host(run)?;
        host.check_quarantine().map_err(ActionFailure::error)?;
        let id = run.progress.action_id();
        host.batches().quarantine_attachments(id, &p, &progress(run)).map_err(ActionFailure::error)
    }
}

pub struct MailScan;

impl Action for MailScan {
    const KIND: ActionKind = ActionKind::MailScan;
    const NEEDS: &'static [Feature] = &[Feature::Mail];
    type Params = mail::MailMessages;
    type Output = mail::MailScanOutput;

    fn run(&self, p: mail::MailMessages, run: &Run<'_>) -> Result<mail::MailScanOutput, ActionFailure> {
        let host = host(run)?;
        let engine = run.ctx.content.engine();
        let progress = |done: usize, all: usize| {
            run.progress.report("scanning messages", u8::try_from(done * 100 / all.max(1)).unwrap_or(100))
        };
        let source = format!("mail_scan:{}", run.progress.action_id());
        let raise = |m: &mail::ScannedMessage| {
            use picket_common::detection::{Detection, Severity};
            use picket_common::url_blocklist as urls;
            let attachments = m.detections.iter().map(|d| Detection {
                path: crate::mail::scan::alert_path(m, &d.attachment),
                sha256: d.sha256.clone(),
                size: d.size,
                rule: d.rule.clone(),
                namespace: d.namespace.clone(),
                severity: d.severity,
            });
            let links = m.blocked_links.iter().map(|l| Detection {
                path: urls::mail_path(&m.user, &m.mailbox, &m.guid, &l.url),
                sha256: urls::alert_sha256(&l.url),
                size: 0,
                rule: urls::MAIL_RULE.into(),
                namespace: urls::NAMESPACE.into(),
                severity: Severity::Malicious,
            });
            run.ctx.alerts.raise(&source, attachments.chain(links).collect());
        };
        let blocklist = run.ctx.content.url_blocklist();
        let hidden = &host.config.quarantine_account;
        crate::mail::scan::scan(&host.doveadm, &engine, &blocklist, &p, hidden, &progress, &raise)
            .map_err(ActionFailure::error)
    }
}

pub struct MailForwarding;

impl Action for MailForwarding {
    const KIND: ActionKind = ActionKind::MailForwarding;
    const NEEDS: &'static [Feature] = &[Feature::Mail];
    type Params = mail::MailUsers;
    type Output = mail::ForwardingOutput;

    fn run(&self, p: mail::MailUsers, run: &Run<'_>) -> Result<mail::ForwardingOutput, ActionFailure> {
        let host = host(run)?;
        let c = &host.config;
        let mut out =
            crate::mail::forwarding::list(&host.doveadm, &p.users, &c.quarantine_account, &c.internal_domains)
                .map_err(|e| ActionFailure::error(e.to_string()))?;
        // The administrator's global scripts run for every user: listed
        // whichever users were asked for.
        match crate::mail::global_sieve::list(&c.dovecot_config, &c.internal_domains) {
            Ok((read, scripts)) => {
                out.scripts_read += read;
                out.scripts.extend(scripts);
            }
            Err(why) => out.scripts.push(mail::SieveScript {
                user: "(global scripts)".into(),
                script: c.dovecot_config.display().to_string(),
                active: false,
                redirects: Vec::new(),
                error: Some(why),
            }),
        }
        Ok(out)
    }
}

pub struct DisableExternalForwarding;

impl Action for DisableExternalForwarding {
    const KIND: ActionKind = ActionKind::DisableExternalForwarding;
    const NEEDS: &'static [Feature] = &[Feature::Mail];
    type Params = mail::MailUsers;
    type Output = mail::ForwardingChangeOutput;

    fn run(&self, p: mail::MailUsers, run: &Run<'_>) -> Result<mail::ForwardingChangeOutput, ActionFailure> {
        let host = host(run)?;
        host.forwarding().disable(run.progress.action_id(), &p.users).map_err(ActionFailure::error)
    }
}

pub struct RestoreForwarding;

impl Action for RestoreForwarding {
    const KIND: ActionKind = ActionKind::RestoreForwarding;
    const NEEDS: &'static [Feature] = &[Feature::Mail];
    type Params = mail::RestoreEmail;
    type Output = mail::ForwardingChangeOutput;

    fn run(&self, p: mail::RestoreEmail, run: &Run<'_>) -> Result<mail::ForwardingChangeOutput, ActionFailure> {
        let host = host(run)?;
        host.forwarding().restore(run.progress.action_id(), p.record_id).map_err(ActionFailure::error)
    }
}
