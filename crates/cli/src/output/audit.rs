//! Audit records: one line each, newest first.

use harvest_proto::common::v1::{AuditAction, AuditRecord};
use serde_json::{Value, json};

use super::{Align, Table, json_time, time};
use crate::enums::short_name;

pub fn record_json(record: &AuditRecord) -> Value {
    json!({
        "record_id": record.record_id,
        "at": json_time(record.at.as_ref()),
        "actor": record.actor,
        "actor_role": record.actor_role,
        "action": short_name::<AuditAction>(record.action),
        "subject": record.subject,
        "detail": record.detail,
        "reason": record.reason,
    })
}

pub fn records_json(records: &[AuditRecord]) -> Value {
    json!({ "records": records.iter().map(record_json).collect::<Vec<_>>() })
}

/// Who made a change: `seller coop-anji`, or `-` while authentication was
/// off.
fn actor(record: &AuditRecord) -> String {
    match (record.actor_role.as_str(), record.actor.as_str()) {
        ("", "") => "-".to_owned(),
        ("", actor) | (actor, "") => actor.to_owned(),
        (role, actor) => format!("{role} {actor}"),
    }
}

pub fn records_human(records: &[AuditRecord]) -> String {
    if records.is_empty() {
        return "no audit records\n".to_owned();
    }
    let mut table = Table::new(&[
        ("AT", Align::Left),
        ("ACTION", Align::Left),
        ("SUBJECT", Align::Left),
        ("BY", Align::Left),
        ("DETAIL", Align::Left),
        ("REASON", Align::Left),
    ]);
    for record in records {
        table.row(vec![
            time(record.at.as_ref()),
            short_name::<AuditAction>(record.action),
            record.subject.clone(),
            actor(record),
            record.detail.clone(),
            record.reason.clone(),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use harvest_proto::Timestamp;

    use super::*;

    fn refund() -> AuditRecord {
        AuditRecord {
            record_id: "aud_1".to_owned(),
            at: Some(Timestamp {
                seconds: 1_748_764_800,
                nanos: 0,
            }),
            actor: "ops-li".to_owned(),
            actor_role: "operator".to_owned(),
            action: AuditAction::PaymentRefunded.into(),
            subject: "ord_1".to_owned(),
            detail: "refunded 500 fen of 2000 fen captured (500 fen refunded in all)".to_owned(),
            reason: "bruised apples".to_owned(),
        }
    }

    #[test]
    fn one_line_per_record_with_who_and_why() {
        let price = AuditRecord {
            record_id: "aud_2".to_owned(),
            actor: String::new(),
            actor_role: String::new(),
            action: AuditAction::PriceChanged.into(),
            subject: "prd_1".to_owned(),
            detail: "price 1200 → 900 fen".to_owned(),
            reason: String::new(),
            ..refund()
        };
        let text = records_human(&[refund(), price]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("AT"), "{text}");
        assert!(lines[1].contains("PAYMENT_REFUNDED"), "{text}");
        assert!(lines[1].contains("operator ops-li"), "{text}");
        assert!(lines[1].contains("bruised apples"), "{text}");
        assert!(lines[2].contains("PRICE_CHANGED"), "{text}");
        assert!(lines[2].contains("price 1200 → 900 fen"), "{text}");
        assert!(lines[2].contains(" - "), "no actor: {text}");
        assert_eq!(records_human(&[]), "no audit records\n");
    }

    #[test]
    fn json_names_every_field() {
        let value = records_json(&[refund()]);
        let record = &value["records"][0];
        assert_eq!(record["action"], "PAYMENT_REFUNDED");
        assert_eq!(record["actor"], "ops-li");
        assert_eq!(record["actor_role"], "operator");
        assert_eq!(record["subject"], "ord_1");
        assert_eq!(record["reason"], "bruised apples");
        assert_eq!(record["at"], "2025-06-01T08:00:00Z");
    }
}
