//! `DeleteByFilter` (issue 39, docs/api.md "DeleteByFilter"): the tenant is scanned in id order
//! at the request's level in rounds, the entities the filter matches are collected
//! up to the call's cap and deleted one by one like `DeleteEntity`; `dry_run` only counts them.
//!
//! Invariants: never deletes more than the cap; never deletes when the filter matched every
//! entity scanned (the whole tenant) unless the request confirms it. Not atomic: a call that
//! fails midway has deleted a prefix of the matches in id order, and repeating it goes on.

use super::*;

impl AlliDbService {
    pub(super) async fn delete_by_filter_rpc(
        &self,
        request: Request<pb::DeleteByFilterRequest>,
    ) -> Result<Response<pb::DeleteByFilterResponse>, Status> {
        let caller = self.authorize(&request, Role::Write)?;
        let request = request.into_inner();
        let (params, level) = validation_stage(|| {
            let params = validate_provenance::delete_by_filter(&request)?;
            Ok((params, self.consistency(request.consistency_level)?))
        })?;
        let tenant = caller.tenant;
        self.check_filter(&tenant, &params.filter)
            .map_err(|e| errors::store_status("delete by filter", e))?;
        let read = ReadOptions::at(level);
        let mut matched: Vec<String> = Vec::new();
        let mut count = 0u64;
        let mut every_one_matched = true;
        let (mut start, mut after): (Option<String>, Option<String>) = (None, None);
        loop {
            let fetch = FILTERED_SCAN_ROUND + usize::from(after.is_some());
            let mut round = self
                .scan_round(&tenant, start.clone(), None, fetch, read)
                .await?;
            if let Some(after) = &after
                && round.first().is_some_and(|e| &e.id == after)
            {
                round.remove(0);
            }
            let ended = round.len() < FILTERED_SCAN_ROUND;
            let last = round.last().map(|e| e.id.clone());
            for entity in round {
                if !params.filter.matches(&EntitySubject(&entity)) {
                    every_one_matched = false;
                    continue;
                }
                count += 1;
                if matched.len() <= params.max_deletes {
                    matched.push(entity.id);
                }
            }
            // One match past the cap says more follow; a non-match says the filter is not
            // "everything". A dry run counts every match.
            let enough = !request.dry_run
                && matched.len() > params.max_deletes
                && (request.confirm || !every_one_matched);
            match last {
                Some(last) if !ended && !enough => {
                    start = Some(last.clone());
                    after = Some(last);
                }
                _ => break,
            }
        }
        if request.dry_run {
            return Ok(Response::new(pb::DeleteByFilterResponse {
                matched: count,
                deleted: 0,
                more: false,
            }));
        }
        if every_one_matched && count > 0 && !request.confirm {
            return Err(Status::invalid_argument(format!(
                "the filter matches all {count} entities of the tenant: set confirm to delete \
                 them all"
            )));
        }
        let more = matched.len() > params.max_deletes;
        matched.truncate(params.max_deletes);
        let deleted = self.delete_ids(&tenant, matched, level).await?;
        tracing::debug!(trace_id = %request.trace_id, deleted, more, "entities deleted by filter");
        Ok(Response::new(pb::DeleteByFilterResponse {
            matched: deleted,
            deleted,
            more,
        }))
    }

    /// Deletes `ids` one by one through the coordinator; how many existed.
    async fn delete_ids(
        &self,
        tenant: &str,
        ids: Vec<String>,
        level: ConsistencyLevel,
    ) -> Result<u64, Status> {
        let coordinator = self.coordinator()?;
        let mut deleted = 0;
        for id in &ids {
            let found = coordinator
                .delete_entity(tenant, id, level)
                .await
                .map_err(|e| errors::cluster_status("delete by filter", e))?;
            deleted += u64::from(found);
        }
        Ok(deleted)
    }
}
