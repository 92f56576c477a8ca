//! Payments, their ledgers and payouts to sellers.

use harvest_proto::payments::v1::{LedgerEntry, LedgerEntryKind, Payment, PaymentState, Payout};
use serde_json::{Value, json};

use super::{Align, Block, Table, json_time, money, present, section, time};
use crate::enums::short_name;

fn is_payout(entry: &&LedgerEntry) -> bool {
    entry.kind == LedgerEntryKind::Payout as i32
}

fn entry_json(entry: &LedgerEntry) -> Value {
    json!({
        "entry_id": entry.entry_id,
        "kind": short_name::<LedgerEntryKind>(entry.kind),
        "amount_fen": entry.amount_fen,
        "seller_id": entry.seller_id,
        "reason": entry.reason,
        "provider_reference": entry.provider_reference,
        "at": json_time(entry.at.as_ref()),
    })
}

pub fn payment_json(payment: &Payment) -> Value {
    json!({
        "payment_id": payment.payment_id,
        "order_id": payment.order_id,
        "buyer_id": payment.buyer_id,
        "region": payment.region,
        "state": short_name::<PaymentState>(payment.state),
        "authorized_fen": payment.authorized_fen,
        "captured_fen": payment.captured_fen,
        "refunded_fen": payment.refunded_fen,
        "decline_reason": payment.decline_reason,
        "entries": payment.entries.iter().map(entry_json).collect::<Vec<_>>(),
        "payouts": payment.entries.iter().filter(is_payout).map(entry_json).collect::<Vec<_>>(),
        "created_at": json_time(payment.created_at.as_ref()),
        "updated_at": json_time(payment.updated_at.as_ref()),
    })
}

pub fn payment_human(payment: &Payment) -> String {
    let summary = Block::new()
        .field("Order", payment.order_id.as_str())
        .field("Payment", payment.payment_id.as_str())
        .field("State", short_name::<PaymentState>(payment.state))
        .maybe("Declined", present(&payment.decline_reason))
        .field("Buyer", payment.buyer_id.as_str())
        .field("Region", payment.region.as_str())
        .field("Authorized", money(payment.authorized_fen))
        .field("Captured", money(payment.captured_fen))
        .field("Refunded", money(payment.refunded_fen))
        .field("Created", time(payment.created_at.as_ref()))
        .field("Updated", time(payment.updated_at.as_ref()))
        .render();

    let mut ledger = Table::new(&[
        ("AT", Align::Left),
        ("KIND", Align::Left),
        ("AMOUNT", Align::Right),
        ("SELLER", Align::Left),
        ("REASON", Align::Left),
        ("REFERENCE", Align::Left),
    ]);
    for entry in &payment.entries {
        ledger.row(vec![
            time(entry.at.as_ref()),
            short_name::<LedgerEntryKind>(entry.kind),
            money(entry.amount_fen),
            entry.seller_id.clone(),
            entry.reason.clone(),
            entry.provider_reference.clone(),
        ]);
    }
    let mut payouts = Table::new(&[
        ("SELLER", Align::Left),
        ("AMOUNT", Align::Right),
        ("AT", Align::Left),
    ]);
    for payout in payment.entries.iter().filter(is_payout) {
        payouts.row(vec![
            payout.seller_id.clone(),
            money(payout.amount_fen),
            time(payout.at.as_ref()),
        ]);
    }

    let mut text = summary;
    if !ledger.is_empty() {
        text += &section("LEDGER", &ledger.render());
    }
    if !payouts.is_empty() {
        text += &section("PAYOUTS", &payouts.render());
    }
    text
}

pub fn payments_json(payments: &[Payment]) -> Value {
    json!({ "payments": payments.iter().map(payment_json).collect::<Vec<_>>() })
}

pub fn payments_human(payments: &[Payment]) -> String {
    if payments.is_empty() {
        return "no payments\n".to_owned();
    }
    let mut table = Table::new(&[
        ("ORDER", Align::Left),
        ("STATE", Align::Left),
        ("AUTHORIZED", Align::Right),
        ("CAPTURED", Align::Right),
        ("REFUNDED", Align::Right),
        ("BUYER", Align::Left),
        ("REGION", Align::Left),
        ("UPDATED", Align::Left),
    ]);
    for payment in payments {
        table.row(vec![
            payment.order_id.clone(),
            short_name::<PaymentState>(payment.state),
            money(payment.authorized_fen),
            money(payment.captured_fen),
            money(payment.refunded_fen),
            payment.buyer_id.clone(),
            payment.region.clone(),
            time(payment.updated_at.as_ref()),
        ]);
    }
    table.render()
}

/// What `payment refund` prints: the payment and the key to retry with.
pub fn refunded_human((payment, key): &(Payment, String)) -> String {
    payment_human(payment) + &format!("\nrefund key {key}: retry safely with --key {key}\n")
}

pub fn refunded_json((payment, key): &(Payment, String)) -> Value {
    json!({ "idempotency_key": key, "payment": payment_json(payment) })
}

pub fn payouts_json(payouts: &[Payout]) -> Value {
    json!({
        "payouts": payouts
            .iter()
            .map(|payout| json!({
                "order_id": payout.order_id,
                "seller_id": payout.seller_id,
                "amount_fen": payout.amount_fen,
                "entry_id": payout.entry_id,
                "at": json_time(payout.at.as_ref()),
            }))
            .collect::<Vec<_>>()
    })
}

pub fn payouts_human(payouts: &[Payout]) -> String {
    if payouts.is_empty() {
        return "no payouts\n".to_owned();
    }
    let mut table = Table::new(&[
        ("ORDER", Align::Left),
        ("AMOUNT", Align::Right),
        ("AT", Align::Left),
    ]);
    for payout in payouts {
        table.row(vec![
            payout.order_id.clone(),
            money(payout.amount_fen),
            time(payout.at.as_ref()),
        ]);
    }
    let total: i64 = payouts.iter().map(|payout| payout.amount_fen).sum();
    format!("{}total {}\n", table.render(), money(total))
}

#[cfg(test)]
mod tests {
    use harvest_proto::Timestamp;

    use super::*;

    fn entry(kind: LedgerEntryKind, amount_fen: i64, seller_id: &str, minute: i64) -> LedgerEntry {
        LedgerEntry {
            entry_id: format!("led_{minute}"),
            kind: kind.into(),
            amount_fen,
            seller_id: seller_id.to_owned(),
            reason: String::new(),
            provider_reference: if seller_id.is_empty() {
                format!("sbx_{minute}")
            } else {
                String::new()
            },
            at: Some(Timestamp {
                seconds: 1_748_764_800 + 60 * minute,
                nanos: 0,
            }),
        }
    }

    fn captured() -> Payment {
        Payment {
            payment_id: "pay_1".to_owned(),
            order_id: "ord_1".to_owned(),
            buyer_id: "buyer-1".to_owned(),
            region: "east".to_owned(),
            state: PaymentState::Captured.into(),
            authorized_fen: 20_400,
            captured_fen: 20_400,
            refunded_fen: 0,
            decline_reason: String::new(),
            entries: vec![
                entry(LedgerEntryKind::Authorization, 20_400, "", 0),
                entry(LedgerEntryKind::Capture, 20_400, "", 30),
                entry(LedgerEntryKind::Commission, 1_020, "", 30),
                entry(LedgerEntryKind::Payout, 19_380, "coop-luochuan", 31),
            ],
            created_at: None,
            updated_at: None,
        }
    }

    #[test]
    fn payment_shows_amounts_ledger_and_payouts() {
        assert_eq!(
            payment_human(&captured()),
            "\
Order       ord_1
Payment     pay_1
State       CAPTURED
Buyer       buyer-1
Region      east
Authorized  ¥204.00
Captured    ¥204.00
Refunded    ¥0.00
Created     -
Updated     -

LEDGER
AT                    KIND            AMOUNT  SELLER         REASON  REFERENCE
2025-06-01T08:00:00Z  AUTHORIZATION  ¥204.00                         sbx_0
2025-06-01T08:30:00Z  CAPTURE        ¥204.00                         sbx_30
2025-06-01T08:30:00Z  COMMISSION      ¥10.20                         sbx_30
2025-06-01T08:31:00Z  PAYOUT         ¥193.80  coop-luochuan

PAYOUTS
SELLER          AMOUNT  AT
coop-luochuan  ¥193.80  2025-06-01T08:31:00Z
"
        );
    }

    #[test]
    fn payment_json_lists_entries_and_payouts() {
        let json = payment_json(&captured());
        assert_eq!(json["state"], "CAPTURED");
        assert_eq!(json["captured_fen"], 20_400);
        assert_eq!(json["entries"].as_array().map(Vec::len), Some(4));
        assert_eq!(json["payouts"][0]["kind"], "PAYOUT");
        assert_eq!(json["payouts"][0]["amount_fen"], 19_380);
        let refunded = refunded_json(&(captured(), "rfd-1".to_owned()));
        assert_eq!(refunded["idempotency_key"], "rfd-1");
        assert!(refunded_human(&(captured(), "rfd-1".to_owned())).contains("--key rfd-1"));
    }

    #[test]
    fn payments_table() {
        let text = payments_human(&[captured()]);
        assert_eq!(
            text,
            "\
ORDER  STATE     AUTHORIZED  CAPTURED  REFUNDED  BUYER    REGION  UPDATED
ord_1  CAPTURED     ¥204.00   ¥204.00     ¥0.00  buyer-1  east    -
"
        );
        assert_eq!(payments_human(&[]), "no payments\n");
    }
}
