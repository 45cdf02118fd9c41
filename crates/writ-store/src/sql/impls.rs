//! The four store role traits, implemented once for any backend type that has a `reader` pool,
//! an inherent `begin_write()` that opens a write transaction holding the writer lock, an
//! inherent `locked_head(&mut tx)` that reads the ledger size under that lock, and a
//! `CLAIM_LOCK` clause. Expand inside a module that also expanded `backend_queries!` as `q`.

/// See the module documentation.
macro_rules! impl_store {
    ($store:ty, $backend:expr) => {
        #[async_trait::async_trait]
        impl $crate::LedgerStore for $store {
            async fn ledger_size(&self) -> Result<u64, $crate::StoreError> {
                q::head_size(&mut *self.reader.acquire().await?).await
            }

            async fn commit(&self, batch: $crate::CommitBatch) -> Result<(), $crate::StoreError> {
                let mut tx = self.begin_write().await?;
                let head = Self::locked_head(&mut tx).await?;
                q::write_batch(&mut tx, head, &batch).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn entry_by_idempotency_key(
                &self,
                key: &str,
            ) -> Result<Option<$crate::LedgerRow>, $crate::StoreError> {
                q::entry_by_idempotency_key(&mut *self.reader.acquire().await?, key).await
            }

            async fn entries_by_idempotency_keys(
                &self,
                keys: &[String],
            ) -> Result<Vec<$crate::LedgerRow>, $crate::StoreError> {
                q::entries_by_idempotency_keys(&mut *self.reader.acquire().await?, keys).await
            }

            async fn latest_entry_of_kind(
                &self,
                kind: writ_core::event::EventKind,
            ) -> Result<Option<$crate::LedgerRow>, $crate::StoreError> {
                q::latest_entry_of_kind(&mut *self.reader.acquire().await?, kind).await
            }

            async fn campaigns_started(
                &self,
                limit: u32,
            ) -> Result<Vec<$crate::LedgerRow>, $crate::StoreError> {
                q::campaigns_started(&mut *self.reader.acquire().await?, limit).await
            }

            async fn entries(
                &self,
                from: u64,
                limit: u32,
            ) -> Result<Vec<$crate::LedgerRow>, $crate::StoreError> {
                q::entries(&mut *self.reader.acquire().await?, from, limit).await
            }

            async fn scan_page(
                &self,
                from: u64,
                limit: u32,
            ) -> Result<$crate::EntryPage, $crate::StoreError> {
                self.scan(from, limit).await
            }

            async fn entries_at(
                &self,
                seqs: &[u64],
            ) -> Result<Vec<$crate::LedgerRow>, $crate::StoreError> {
                q::entries_at(&mut *self.reader.acquire().await?, seqs).await
            }

            async fn leaves(
                &self,
                from: u64,
                limit: u32,
            ) -> Result<Vec<(u64, Vec<u8>, [u8; 32])>, $crate::StoreError> {
                q::leaves(&mut *self.reader.acquire().await?, from, limit).await
            }

            async fn case_entries(
                &self,
                case: writ_core::ids::CaseId,
            ) -> Result<Vec<$crate::LedgerRow>, $crate::StoreError> {
                q::case_entries(&mut *self.reader.acquire().await?, case).await
            }

            async fn checkpoints(&self) -> Result<Vec<$crate::CheckpointRow>, $crate::StoreError> {
                q::checkpoints(&mut *self.reader.acquire().await?).await
            }

            async fn checkpoint_at(
                &self,
                size: u64,
            ) -> Result<Option<$crate::CheckpointRow>, $crate::StoreError> {
                q::checkpoint_at(&mut *self.reader.acquire().await?, size).await
            }

            async fn put_cosignature(
                &self,
                row: &$crate::CosignatureRow,
            ) -> Result<(), $crate::StoreError> {
                let mut tx = self.begin_write().await?;
                q::put_cosignature(&mut tx, row).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn cosignatures(
                &self,
            ) -> Result<Vec<$crate::CosignatureRow>, $crate::StoreError> {
                q::cosignatures(&mut *self.reader.acquire().await?).await
            }

            async fn latest_checkpoint(
                &self,
            ) -> Result<Option<$crate::CheckpointRow>, $crate::StoreError> {
                q::latest_checkpoint(&mut *self.reader.acquire().await?).await
            }

            async fn evidence(
                &self,
                digest: &writ_core::Sha256Digest,
            ) -> Result<Option<$crate::EvidenceRow>, $crate::StoreError> {
                q::evidence(&mut *self.reader.acquire().await?, digest).await
            }

            async fn evidence_page(
                &self,
                after: Option<&str>,
                limit: u32,
            ) -> Result<Vec<(String, Vec<u8>)>, $crate::StoreError> {
                q::evidence_page(&mut *self.reader.acquire().await?, after, limit).await
            }

            async fn evidence_meta(
                &self,
                digests: &[writ_core::Sha256Digest],
            ) -> Result<Vec<(String, String, jiff::Timestamp)>, $crate::StoreError> {
                q::evidence_meta(&mut *self.reader.acquire().await?, digests).await
            }
        }

        #[async_trait::async_trait]
        impl $crate::ProjectionStore for $store {
            async fn identities_by_external_ids(
                &self,
                subjects: &[(String, String)],
            ) -> Result<Vec<writ_core::identity::Identity>, $crate::StoreError> {
                q::identities_by_external_ids(&mut *self.reader.acquire().await?, subjects).await
            }

            async fn open_cases_for(
                &self,
                keys: &[(String, String)],
            ) -> Result<Vec<writ_core::case::Case>, $crate::StoreError> {
                q::open_cases_for(&mut *self.reader.acquire().await?, keys).await
            }

            async fn exceptions(
                &self,
                filter: &$crate::model::ExceptionFilter,
            ) -> Result<Vec<$crate::model::ExceptionView>, $crate::StoreError> {
                q::exceptions(&mut *self.reader.acquire().await?, filter).await
            }

            async fn unreviewed_bypasses_of(
                &self,
                principal: &str,
            ) -> Result<Vec<writ_core::ids::CaseId>, $crate::StoreError> {
                q::unreviewed_bypasses_of(&mut *self.reader.acquire().await?, principal).await
            }

            async fn due_deadlines(
                &self,
                now: jiff::Timestamp,
                limit: u32,
            ) -> Result<Vec<$crate::model::DueDeadline>, $crate::StoreError> {
                q::due_deadlines(&mut *self.reader.acquire().await?, now, limit).await
            }

            async fn systems(
                &self,
            ) -> Result<Vec<$crate::model::SystemStatus>, $crate::StoreError> {
                q::systems(&mut *self.reader.acquire().await?).await
            }

            async fn claim_sync_round(
                &self,
                system: &str,
                round: i64,
                holder: &str,
            ) -> Result<bool, $crate::StoreError> {
                let mut tx = self.begin_write().await?;
                let claimed = q::claim_sync_round(&mut tx, system, round, holder).await?;
                tx.commit().await?;
                Ok(claimed)
            }

            async fn live_grants(
                &self,
                limit: u32,
            ) -> Result<Vec<(writ_core::ids::CaseId, String, u64)>, $crate::StoreError> {
                q::live_grants(&mut *self.reader.acquire().await?, limit).await
            }

            async fn finding_types_about(
                &self,
                system: &str,
                external_id: &str,
                after_seq: u64,
            ) -> Result<Vec<String>, $crate::StoreError> {
                q::finding_types_about(
                    &mut *self.reader.acquire().await?,
                    system,
                    external_id,
                    after_seq,
                )
                .await
            }

            async fn open_case_heads(
                &self,
                keys: &[(String, String)],
            ) -> Result<Vec<$crate::model::CaseHead>, $crate::StoreError> {
                q::open_case_heads(&mut *self.reader.acquire().await?, keys).await
            }

            async fn open_case_heads_under(
                &self,
                keys: &[(String, String)],
            ) -> Result<Vec<$crate::model::CaseHead>, $crate::StoreError> {
                q::open_case_heads_under(&mut *self.reader.acquire().await?, keys).await
            }

            async fn last_closed_cases_for(
                &self,
                keys: &[(String, String)],
            ) -> Result<Vec<$crate::model::CaseHead>, $crate::StoreError> {
                q::last_closed_cases_for(&mut *self.reader.acquire().await?, keys).await
            }

            async fn pending_cases_where(
                &self,
                by_system: bool,
                value: &str,
            ) -> Result<Vec<$crate::model::CaseHead>, $crate::StoreError> {
                q::pending_cases_where(&mut *self.reader.acquire().await?, by_system, value).await
            }

            async fn open_cases_of_identity(
                &self,
                identity: writ_core::ids::IdentityId,
            ) -> Result<Vec<$crate::model::CaseHead>, $crate::StoreError> {
                q::open_cases_of_identity(&mut *self.reader.acquire().await?, identity).await
            }

            async fn unresolved_cases_for(
                &self,
                subjects: &[String],
            ) -> Result<Vec<$crate::model::CaseHead>, $crate::StoreError> {
                q::unresolved_cases_for(&mut *self.reader.acquire().await?, subjects).await
            }

            async fn identity(
                &self,
                id: writ_core::ids::IdentityId,
            ) -> Result<Option<writ_core::identity::Identity>, $crate::StoreError> {
                q::identity(&mut *self.reader.acquire().await?, id).await
            }

            async fn identity_by_external_id(
                &self,
                system: &str,
                external_id: &str,
            ) -> Result<Option<writ_core::identity::Identity>, $crate::StoreError> {
                q::identity_by_external_id(&mut *self.reader.acquire().await?, system, external_id)
                    .await
            }

            async fn identities(
                &self,
            ) -> Result<Vec<writ_core::identity::Identity>, $crate::StoreError> {
                q::identities(&mut *self.reader.acquire().await?).await
            }

            async fn case(
                &self,
                id: writ_core::ids::CaseId,
            ) -> Result<Option<writ_core::case::Case>, $crate::StoreError> {
                q::case(&mut *self.reader.acquire().await?, id).await
            }

            async fn case_view(
                &self,
                id: writ_core::ids::CaseId,
            ) -> Result<Option<$crate::CaseView>, $crate::StoreError> {
                // One read transaction: the case, its votes and its job from the same instant.
                let mut tx = self.reader.begin().await?;
                let view = q::case_view(&mut tx, id).await?;
                tx.commit().await?;
                Ok(view)
            }

            async fn cases(
                &self,
                filter: &$crate::CaseFilter,
            ) -> Result<Vec<writ_core::case::Case>, $crate::StoreError> {
                q::cases(&mut *self.reader.acquire().await?, filter).await
            }

            async fn case_sources(
                &self,
                case: writ_core::ids::CaseId,
            ) -> Result<Vec<String>, $crate::StoreError> {
                q::case_sources(&mut *self.reader.acquire().await?, case).await
            }

            async fn principal(
                &self,
                name: &str,
            ) -> Result<Option<$crate::PrincipalView>, $crate::StoreError> {
                q::principal(&mut *self.reader.acquire().await?, name).await
            }

            async fn principals(&self) -> Result<Vec<$crate::PrincipalView>, $crate::StoreError> {
                q::principals(&mut *self.reader.acquire().await?).await
            }

            async fn principal_count(&self) -> Result<u64, $crate::StoreError> {
                q::principal_count(&mut *self.reader.acquire().await?).await
            }

            async fn token_by_digest(
                &self,
                digest: &writ_core::Sha256Digest,
            ) -> Result<Option<$crate::TokenView>, $crate::StoreError> {
                q::token_by_digest(&mut *self.reader.acquire().await?, digest).await
            }

            async fn tokens_of(
                &self,
                name: &str,
            ) -> Result<Vec<$crate::TokenView>, $crate::StoreError> {
                q::tokens_of(&mut *self.reader.acquire().await?, name).await
            }
        }

        #[async_trait::async_trait]
        impl $crate::JobQueue for $store {
            async fn claim_jobs(
                &self,
                holder: &str,
                now: jiff::Timestamp,
                until: jiff::Timestamp,
                limit: u32,
            ) -> Result<Vec<$crate::JobView>, $crate::StoreError> {
                let mut tx = self.begin_write().await?;
                let jobs =
                    q::claim_jobs(&mut tx, Self::CLAIM_LOCK, holder, now, until, limit).await?;
                tx.commit().await?;
                Ok(jobs)
            }

            async fn renew_lease(
                &self,
                job: writ_core::ids::JobId,
                holder: &str,
                until: jiff::Timestamp,
            ) -> Result<bool, $crate::StoreError> {
                let mut tx = self.begin_write().await?;
                let renewed = q::renew_lease(&mut tx, job, holder, until).await?;
                tx.commit().await?;
                Ok(renewed)
            }

            async fn claim_outbox(
                &self,
                holder: &str,
                now: jiff::Timestamp,
                until: jiff::Timestamp,
                limit: u32,
            ) -> Result<Vec<$crate::model::OutboxRow>, $crate::StoreError> {
                let mut tx = self.begin_write().await?;
                let claimed = q::claim_outbox(&mut tx, holder, now, until, limit).await?;
                tx.commit().await?;
                Ok(claimed)
            }

            async fn finish_delivery(
                &self,
                id: &str,
                holder: &str,
                attempt: $crate::model::DeliveryAttempt,
                next: $crate::model::DeliveryNext,
            ) -> Result<(), $crate::StoreError> {
                let mut tx = self.begin_write().await?;
                q::finish_delivery(&mut tx, id, holder, &attempt, &next).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn outbox(
                &self,
                limit: u32,
            ) -> Result<Vec<($crate::model::OutboxRow, String)>, $crate::StoreError> {
                q::outbox(&mut *self.reader.acquire().await?, limit).await
            }

            async fn queue_depths(&self) -> Result<$crate::QueueDepths, $crate::StoreError> {
                q::queue_depths(&mut *self.reader.acquire().await?).await
            }

            async fn release_lease(
                &self,
                job: writ_core::ids::JobId,
                holder: &str,
            ) -> Result<(), $crate::StoreError> {
                let mut tx = self.begin_write().await?;
                q::release_lease(&mut tx, job, holder).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn jobs_applied_since(
                &self,
                system: &str,
                since: jiff::Timestamp,
            ) -> Result<Vec<writ_core::job::Job>, $crate::StoreError> {
                q::jobs_applied_since(&mut *self.reader.acquire().await?, system, since).await
            }

            async fn job_view(
                &self,
                id: writ_core::ids::JobId,
            ) -> Result<Option<$crate::JobView>, $crate::StoreError> {
                q::job_view(&mut *self.reader.acquire().await?, id).await
            }

            async fn jobs_for_case(
                &self,
                case: writ_core::ids::CaseId,
            ) -> Result<Vec<writ_core::job::Job>, $crate::StoreError> {
                q::jobs_for_case(&mut *self.reader.acquire().await?, case).await
            }
        }

        #[async_trait::async_trait]
        impl $crate::AdminStore for $store {
            fn backend(&self) -> $crate::Backend {
                $backend
            }

            async fn ping(&self) -> Result<(), $crate::StoreError> {
                sqlx::query("SELECT 1").execute(&self.reader).await?;
                Ok(())
            }

            async fn replace_projections(
                &self,
                effects: Vec<$crate::Effect>,
            ) -> Result<(), $crate::StoreError> {
                let mut tx = self.begin_write().await?;
                Self::locked_head(&mut tx).await?;
                q::replace_projections(&mut tx, &effects).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn projection_dump(&self) -> Result<$crate::ProjectionDump, $crate::StoreError> {
                // One read transaction, so every table is from the same instant.
                let mut tx = self.reader.begin().await?;
                let dump = q::projection_dump(&mut tx).await?;
                tx.commit().await?;
                Ok(dump)
            }
        }
    };
}

pub(crate) use impl_store;
