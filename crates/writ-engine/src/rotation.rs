//! Rotation with cut-over, orchestrated: a `rotate` job on a connector that offers
//! [`KeyRotation`] goes step by step instead of one `apply`, each step recorded in the ledger
//! (on the job snapshot's [`RotationRecord`]) before the next is taken:
//!
//! 1. `delivered`: the new credential is created and delivered where its consumers read it
//!    (the connector never hands writ the secret; the record keeps the new key id and the
//!    secret's version);
//! 2. `cut_over`: the new key's last use, as the target reports it, shows the consumers use
//!    it. Until then the job waits; if the deadline (`rotation_cutover_seconds`) passes first,
//!    the job fails for a human (`escalated`, an `escalation` notification) and the old key
//!    stays active: a consumer that never cut over is not broken;
//! 3. `old_deactivated`: the old key is deactivated (the job is applied), then read back: old
//!    inactive, new active (verified);
//! 4. `old_deleted`: after the grace period (`rotation_grace_seconds`) the scheduler deletes
//!    the old key. Only then (or once a human was asked) can the case close.
//!
//! A crash between steps resumes from the last recorded one: every connector call is safe to
//! repeat (an undelivered new key is deleted and made again, a delivered one adopted).

use writ_connectors::{ConnectorError, KeyRotation, Plan};
use writ_core::case::CaseState;
use writ_core::change::ApplyOutcome;
use writ_core::event::{
    EventBody, ReadBack, RotationProgressed, WriteBackApplied, WriteBackVerified,
};
use writ_core::job::JobState;
use writ_core::rotation::{RotationRecord, RotationStep};
use writ_core::workflow::ENGINE_ACTOR;
use writ_store::{CaseView, DueDeadline};

use crate::writeback::{PassReport, Step, WriteBack, WriteBackError, case_expectation};

/// The user and old key id a rotation plan names (its pre-image).
fn old_key(plan: &Plan) -> Option<(String, String)> {
    let attrs = &plan.pre_image.attributes;
    Some((
        attrs.get("user")?.as_str()?.to_owned(),
        attrs.get("access_key_id")?.as_str()?.to_owned(),
    ))
}

impl WriteBack {
    /// Takes the rotation of `step`'s job as far as it can go now.
    pub(crate) async fn drive_rotation(
        &self,
        mut step: Step,
        case: &CaseView,
        plan: &Plan,
        rotation: &dyn KeyRotation,
        report: &mut PassReport,
    ) -> Result<(), WriteBackError> {
        let Some((user, old)) = old_key(plan) else {
            return self
                .fail(
                    step,
                    case,
                    "the plan names no access key to rotate (its pre-image has no user and key id)",
                    report,
                )
                .await;
        };
        let mut record = step
            .job
            .rotation
            .clone()
            .map_or_else(|| RotationRecord::planned(&old), |record| *record);
        loop {
            // Fence: only the lease holder touches the target.
            if !self.renew(step.job.id).await? {
                return Ok(());
            }
            let now = self.clock.now();
            match (step.job.state, record.step) {
                (JobState::Intent, RotationStep::Planned) => {
                    let delivered = match rotation.create_and_deliver(&user, &old).await {
                        Ok(delivered) => delivered,
                        Err(err) => return self.retry_or_fail(step, case, err, report).await,
                    };
                    record.step = RotationStep::Delivered;
                    record.new_key_id = Some(delivered.key_id.clone());
                    record.secret_name = Some(delivered.secret_name.clone());
                    record.secret_version = Some(delivered.secret_version);
                    record.delivered_at = Some(now);
                    record.cutover_deadline = Some(now + self.settings.rotation_cutover);
                    step.job.rotation = Some(Box::new(record.clone()));
                    let note = format!(
                        "new key {} delivered to {}; waiting for its consumers to use it",
                        delivered.key_id, delivered.secret_name
                    );
                    if !self.record_rotation(&mut step, "delivered", note).await? {
                        return Ok(());
                    }
                }
                (JobState::Intent, RotationStep::Delivered) => {
                    let new = record.new_key_id.clone().unwrap_or_default();
                    let used = match rotation.last_used(&user, &new).await {
                        Ok(used) => used,
                        Err(err) => return self.retry_or_fail(step, case, err, report).await,
                    };
                    match used {
                        Some(at) => {
                            record.step = RotationStep::CutOver;
                            record.new_key_used_at = Some(at);
                            step.job.rotation = Some(Box::new(record.clone()));
                            let note =
                                format!("new key {new} in use since {at}: the old key may go");
                            if !self.record_rotation(&mut step, "cut-over", note).await? {
                                return Ok(());
                            }
                        }
                        None if record.cutover_deadline.is_some_and(|d| now >= d) => {
                            record.step = RotationStep::Escalated;
                            step.job.rotation = Some(Box::new(record.clone()));
                            let reason = format!(
                                "the consumers of {user} never used the new key {new} (delivered to {}) by {}; the old key {old} stays active so nothing breaks: a human decides",
                                record.secret_name.as_deref().unwrap_or("?"),
                                record
                                    .cutover_deadline
                                    .map(|d| d.to_string())
                                    .unwrap_or_default()
                            );
                            return self.fail(step, case, &reason, report).await;
                        }
                        // Not yet: look again on a later pass.
                        None => return Ok(()),
                    }
                }
                (JobState::Intent, RotationStep::CutOver) => {
                    if let Err(err) = rotation.deactivate(&user, &old).await {
                        return self.retry_or_fail(step, case, err, report).await;
                    }
                    record.step = RotationStep::OldDeactivated;
                    record.delete_old_at = Some(now + self.settings.rotation_grace);
                    step.job.rotation = Some(Box::new(record.clone()));
                    step.job.state = JobState::Applied;
                    step.job.applied_at = Some(now);
                    self.record_job(&mut step, "applied", |job| {
                        EventBody::WriteBackApplied(WriteBackApplied {
                            job,
                            outcome: ApplyOutcome::Applied,
                        })
                    })
                    .await?;
                }
                (JobState::Applied, _) => {
                    let new = record.new_key_id.clone().unwrap_or_default();
                    let statuses = async {
                        Ok::<_, ConnectorError>((
                            rotation.key_status(&user, &old).await?,
                            rotation.key_status(&user, &new).await?,
                        ))
                    }
                    .await;
                    return match statuses {
                        Ok((Some(false), Some(true))) => {
                            step.job.state = JobState::Verified;
                            let mut remediated = case.case.clone();
                            remediated.state = CaseState::Remediated;
                            self.record_case_step(
                                &mut step,
                                ENGINE_ACTOR,
                                case,
                                "verified",
                                |job| {
                                    EventBody::WriteBackVerified(WriteBackVerified {
                                        job,
                                        case: remediated,
                                        verification: ReadBack::Confirmed,
                                    })
                                },
                            )
                            .await?;
                            report.verified += 1;
                            Ok(())
                        }
                        Ok((old_status, new_status)) => {
                            let show = |s: Option<bool>| match s {
                                Some(true) => "active",
                                Some(false) => "inactive",
                                None => "gone",
                            };
                            let reason = format!(
                                "read-back: old key {old} is {}, new key {new} is {}",
                                show(old_status),
                                show(new_status)
                            );
                            self.fail(step, case, &reason, report).await
                        }
                        Err(err) => self.retry_or_fail(step, case, err, report).await,
                    };
                }
                _ => return Ok(()),
            }
        }
    }

    /// Records a rotation step of `step`'s job (the case stays as it is).
    async fn record_rotation(
        &self,
        step: &mut Step,
        name: &str,
        note: String,
    ) -> Result<bool, WriteBackError> {
        self.record_job(step, &format!("rotation:{name}"), |job| {
            EventBody::RotationProgressed(RotationProgressed { job, note })
        })
        .await
    }

    /// Deletes a rotated-out key once its grace period is over: `rotation_progressed` with the
    /// step `old_deleted`, against the job as read. `false` when there is nothing to do now.
    pub(crate) async fn delete_rotated(&self, due: &DueDeadline) -> Result<bool, WriteBackError> {
        let view = self.case_view(due.case_id).await?;
        let Some(job_view) = view.job.as_ref() else {
            return Ok(false);
        };
        let job = &job_view.job;
        let Some(record) = job.rotation.clone() else {
            return Ok(false);
        };
        if job.state != JobState::Verified || record.step != RotationStep::OldDeactivated {
            return Ok(false);
        }
        let Some(connector) = self.connector(&job.system) else {
            return Ok(false);
        };
        let Some(rotation) = connector.key_rotation() else {
            return Ok(false);
        };
        let plan = match self
            .store
            .entries_at(&job_view.intent_seq.into_iter().collect::<Vec<_>>())
            .await?
            .pop()
        {
            Some(row) => match crate::entries::decode_body(&row)? {
                EventBody::WriteBackIntent(intent) => intent.plan,
                _ => return Ok(false),
            },
            None => return Ok(false),
        };
        let Some((user, old)) = old_key(&plan) else {
            return Ok(false);
        };
        if let Err(err) = rotation.delete_key(&user, &old).await {
            tracing::warn!(job = %job.id, error = %err, "deleting the rotated-out key failed; a later pass tries again");
            return Ok(false);
        }
        if rotation
            .key_status(&user, &old)
            .await
            .map_err(|err| WriteBackError::Refused(err.to_string()))?
            .is_some()
        {
            return Ok(false);
        }
        let mut step = Step::new(job_view);
        let mut done = record;
        done.step = RotationStep::OldDeleted;
        step.job.rotation = Some(done);
        let note =
            format!("old key {old} deleted after the grace period; the rotation is complete");
        let draft = crate::sequencer::Draft {
            expect: vec![step.expectation(), case_expectation(&view)],
            ..crate::sequencer::Draft::new(
                Some(view.case.id),
                ENGINE_ACTOR,
                format!("job:{}:rotation:old-deleted", job.id),
                EventBody::RotationProgressed(RotationProgressed {
                    job: step.job.clone(),
                    note,
                }),
            )
        };
        self.record_deadline(vec![draft]).await
    }
}
