//! The audit log of a service: who changed money or stock over its API,
//! what, when and why, for operators to list.
//!
//! Each service keeps one Redis Stream of records, newest last, trimmed to
//! the retention (`redis.retention_secs`) on every write, beside a sorted set
//! of the record ids it holds. Both keys share the service's hash tag, so the
//! one script that appends a record runs on a Redis Cluster too; a stream a
//! service keeps on one slot is fine because audit records are rare (an
//! operator's refund, a seller's price change), not one per order.
//!
//! A record's id is derived from what makes the change one (a product and
//! its lot id, an order and a refund's idempotency key), so that a retried
//! call that finds the change already made appends nothing: the script skips
//! an id it holds. A service appends a record only once its change has
//! succeeded. The change and its record are two writes in different slots
//! (the change's keys are those of its product, order or shipment), so they
//! cannot be one transaction: [`AuditLog::record`] tries the append a few
//! times within a few seconds, and when it still fails the change stands,
//! the record is logged at error level and counted in
//! [`AUDIT_RECORDS_LOST`].

use std::time::Duration;

use harvest_proto::common::v1::{
    AuditAction, AuditRecord, ListAuditRecordsRequest, ListAuditRecordsResponse,
};
use prost::Message;
use redis::Script;
use tonic::Status;

use crate::auth::Identity;
use crate::store::Redis;

/// Counter: audit records that could not be written after their change
/// succeeded, by `service` and `action`.
pub const AUDIT_RECORDS_LOST: &str = "harvest_audit_records_lost_total";
/// Counter: audit records written, by `service` and `action`.
pub const AUDIT_RECORDS_WRITTEN: &str = "harvest_audit_records_written_total";

/// How often an append is tried before the record is given up as lost.
const ATTEMPTS: u32 = 3;
/// The wait before the second attempt; it doubles after each.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// How long one attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);

const DEFAULT_PAGE_SIZE: usize = 50;
const MAX_PAGE_SIZE: usize = 200;
/// Entries read from the stream at a time while a listing filters by
/// subject.
const SCAN_BATCH: usize = 200;
/// Entries one page reads at most while filtering by subject: a page may
/// then come back short (even empty) with a token to go on from.
const MAX_SCANNED: usize = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("redis command failed")]
    Redis(#[from] redis::RedisError),
    #[error("audit log entry {0} is corrupt")]
    Corrupt(String),
    #[error("writing the audit record took longer than {0:?}")]
    TimedOut(Duration),
}

impl From<AuditError> for Status {
    fn from(error: AuditError) -> Status {
        match &error {
            AuditError::Redis(redis) if crate::store::unreachable(redis) => {
                crate::store::unreachable_status(&error, crate::store::RETRY_LATER)
            }
            AuditError::TimedOut(_) => {
                crate::store::unreachable_status(&error, crate::store::RETRY_LATER)
            }
            _ => {
                tracing::error!(error.cause_chain = ?error, "request failed");
                Status::internal("internal error")
            }
        }
    }
}

/// One change to record: what happened to what, and what makes it one.
#[derive(Clone, Debug)]
pub struct Change<'a> {
    pub action: AuditAction,
    /// The product, order or shipment id.
    pub subject: &'a str,
    /// What changed, exactly, for people.
    pub detail: String,
    /// The caller's reason; empty when the change takes none.
    pub reason: &'a str,
    /// The parts that name this change and no other, the same for every
    /// retry of it (with the action, they make the record's id).
    pub cause: &'a [&'a str],
}

fn append_script() -> &'static Script {
    static SCRIPT: std::sync::OnceLock<Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| Script::new(include_str!("audit/append.lua")))
}

/// A service's audit log. Cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    redis: Redis,
    service: &'static str,
    log_key: String,
    ids_key: String,
    retention: Duration,
}

impl AuditLog {
    /// The audit log of `service` (`catalog`, `payments`, `delivery`), under
    /// `key_prefix`, keeping records for `retention`.
    pub fn new(redis: Redis, key_prefix: &str, service: &'static str, retention: Duration) -> Self {
        AuditLog {
            redis,
            service,
            log_key: format!("{key_prefix}audit:{{{service}}}:log"),
            ids_key: format!("{key_prefix}audit:{{{service}}}:ids"),
            retention,
        }
    }

    /// The id of the record of the change named by `action` and `cause`.
    pub fn record_id(&self, action: AuditAction, cause: &[&str]) -> String {
        let mut parts = vec![self.service, action.as_str_name()];
        parts.extend_from_slice(cause);
        harvest_domain::deterministic_id("aud", &parts).to_string()
    }

    /// The record of `change` made by `caller` (`None` while authentication
    /// is off), dated now.
    pub fn new_record(&self, caller: Option<&Identity>, change: &Change<'_>) -> AuditRecord {
        AuditRecord {
            record_id: self.record_id(change.action, change.cause),
            at: Some(crate::clock::now().into()),
            actor: caller
                .map(|caller| caller.subject.clone())
                .unwrap_or_default(),
            actor_role: caller
                .map(|caller| caller.role.as_str().to_owned())
                .unwrap_or_default(),
            action: change.action.into(),
            subject: change.subject.to_owned(),
            detail: change.detail.clone(),
            reason: change.reason.to_owned(),
        }
    }

    /// Records `change`, made by `caller`, once its change has succeeded:
    /// tried [`ATTEMPTS`] times; a record that still cannot be written is
    /// logged and counted in [`AUDIT_RECORDS_LOST`], and the call goes on.
    pub async fn record(&self, caller: Option<&Identity>, change: Change<'_>) {
        let record = self.new_record(caller, &change);
        let action = change.action.as_str_name();
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=ATTEMPTS {
            let appended = tokio::time::timeout(ATTEMPT_TIMEOUT, self.append(&record))
                .await
                .unwrap_or(Err(AuditError::TimedOut(ATTEMPT_TIMEOUT)));
            match appended {
                Ok(written) => {
                    if written {
                        metrics::counter!(AUDIT_RECORDS_WRITTEN, "service" => self.service, "action" => action)
                            .increment(1);
                    }
                    return;
                }
                Err(error) if attempt < ATTEMPTS => {
                    tracing::warn!(error.cause_chain = ?error, attempt, "audit record not written; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                Err(error) => {
                    metrics::counter!(AUDIT_RECORDS_LOST, "service" => self.service, "action" => action)
                        .increment(1);
                    tracing::error!(
                        error.cause_chain = ?error,
                        record_id = %record.record_id,
                        actor = %record.actor,
                        actor_role = %record.actor_role,
                        action,
                        subject = %record.subject,
                        detail = %record.detail,
                        reason = %record.reason,
                        "audit record lost: the change stands without its record",
                    );
                }
            }
        }
    }

    /// Appends `record` unless the log holds its id already; whether it did.
    pub async fn append(&self, record: &AuditRecord) -> Result<bool, AuditError> {
        let mut redis = self.redis.clone();
        let now_ms = crate::clock::now_ms();
        let written: i64 = append_script()
            .key(&self.log_key)
            .key(&self.ids_key)
            .arg(&record.record_id)
            .arg(now_ms)
            .arg(self.oldest_ms(now_ms))
            .arg(&record.subject)
            .arg(record.encode_to_vec())
            .invoke_async(&mut redis)
            .await?;
        Ok(written == 1)
    }

    /// The time before which records are no longer kept.
    fn oldest_ms(&self, now_ms: i64) -> i64 {
        now_ms
            .saturating_sub(i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX))
            .max(0)
    }

    /// Up to `size` records, newest first, of `subject` (of every subject
    /// when `None`), older than the entry `before` (a stream id from an
    /// earlier page); and the stream id to go on from when more may follow.
    pub async fn page(
        &self,
        subject: Option<&str>,
        before: Option<&str>,
        size: usize,
    ) -> Result<(Vec<AuditRecord>, Option<String>), AuditError> {
        let mut redis = self.redis.clone();
        let oldest = self.oldest_ms(crate::clock::now_ms()).to_string();
        let mut end = before.map_or_else(|| "+".to_owned(), |id| format!("({id}"));
        let mut found: Vec<(String, AuditRecord)> = Vec::new();
        let mut scanned = 0;
        loop {
            // One more than the page, to know whether another follows.
            let count = match subject {
                None => size + 1 - found.len(),
                Some(_) => SCAN_BATCH,
            };
            let entries: Vec<(String, Vec<Vec<u8>>)> = redis::cmd("XREVRANGE")
                .arg(&self.log_key)
                .arg(&end)
                .arg(&oldest)
                .arg("COUNT")
                .arg(count)
                .query_async(&mut redis)
                .await?;
            let exhausted = entries.len() < count;
            for (id, fields) in entries {
                scanned += 1;
                end = format!("({id}");
                let entry = Entry::parse(&id, &fields)?;
                if subject.is_some_and(|wanted| entry.subject != wanted.as_bytes()) {
                    continue;
                }
                if found.len() == size {
                    let last = found.last().map(|(id, _)| id.clone());
                    return Ok((found.into_iter().map(|(_, r)| r).collect(), last));
                }
                let record =
                    AuditRecord::decode(entry.data).map_err(|_| AuditError::Corrupt(id.clone()))?;
                found.push((id, record));
            }
            let records = |found: Vec<(String, AuditRecord)>| found.into_iter().map(|(_, r)| r);
            if exhausted {
                return Ok((records(found).collect(), None));
            }
            if scanned >= MAX_SCANNED {
                let resume = end.trim_start_matches('(').to_owned();
                return Ok((records(found).collect(), Some(resume)));
            }
        }
    }

    /// Answers `ListAuditRecords`: the request checked, a page read.
    pub async fn list(
        &self,
        request: ListAuditRecordsRequest,
    ) -> Result<ListAuditRecordsResponse, Status> {
        let size = harvest_domain::page_size(request.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
            .map_err(|reason| Status::invalid_argument(format!("page_size: {reason}")))?;
        let subject = match request.subject.trim() {
            "" => None,
            subject => Some(
                harvest_domain::Id::parse(subject)
                    .map_err(|error| Status::invalid_argument(format!("subject: {error}")))?,
            ),
        };
        let before = match request.page_token.as_str() {
            "" => None,
            token => Some(decode_page_token(token).ok_or_else(|| {
                Status::invalid_argument(format!(
                    "page_token: {}",
                    harvest_domain::NOT_A_PAGE_TOKEN
                ))
            })?),
        };
        let (records, next) = self
            .page(
                subject.as_ref().map(harvest_domain::Id::as_str),
                before.as_deref(),
                size,
            )
            .await?;
        Ok(ListAuditRecordsResponse {
            records,
            next_page_token: next
                .map(|id| harvest_domain::encode_page_token(&id))
                .unwrap_or_default(),
        })
    }
}

/// The fields of one stream entry.
struct Entry<'a> {
    subject: &'a [u8],
    data: &'a [u8],
}

impl<'a> Entry<'a> {
    fn parse(id: &str, fields: &'a [Vec<u8>]) -> Result<Entry<'a>, AuditError> {
        let mut subject = None;
        let mut data = None;
        for pair in fields.chunks(2) {
            match pair {
                [name, value] if name == b"subject" => subject = Some(value.as_slice()),
                [name, value] if name == b"data" => data = Some(value.as_slice()),
                _ => {}
            }
        }
        match (subject, data) {
            (Some(subject), Some(data)) => Ok(Entry { subject, data }),
            _ => Err(AuditError::Corrupt(id.to_owned())),
        }
    }
}

/// A stream id, `<ms>-<seq>`, from a page token.
fn decode_page_token(token: &str) -> Option<String> {
    let id = harvest_domain::decode_page_token(token)?;
    let (ms, seq) = id.split_once('-')?;
    let digits = |part: &str| {
        !part.is_empty() && part.len() <= 20 && part.bytes().all(|b| b.is_ascii_digit())
    };
    (digits(ms) && digits(seq)).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_carry_stream_ids_only() {
        let token = harvest_domain::encode_page_token("1700000000000-3");
        assert_eq!(
            decode_page_token(&token).as_deref(),
            Some("1700000000000-3")
        );
        for bad in [
            "",
            "zz",
            &harvest_domain::encode_page_token("+"),
            &harvest_domain::encode_page_token("17-"),
            &harvest_domain::encode_page_token("(17-0"),
            &harvest_domain::encode_page_token("17-0 COUNT"),
        ] {
            assert!(decode_page_token(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn an_entry_needs_its_subject_and_data() {
        let fields = vec![
            b"id".to_vec(),
            b"aud_1".to_vec(),
            b"subject".to_vec(),
            b"prd_1".to_vec(),
            b"data".to_vec(),
            vec![1, 2],
        ];
        let entry = Entry::parse("1-0", &fields).expect("parsed");
        assert_eq!((entry.subject, entry.data), (&b"prd_1"[..], &[1u8, 2][..]));
        assert!(Entry::parse("1-0", &fields[..4]).is_err());
    }
}
