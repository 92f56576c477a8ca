//! The payments audit log, with authentication on: each refund recorded
//! once, with its operator and reason; nothing for a refused or repeated
//! refund; listed to operators only, newest first, by order.

use harvest_kit::auth::Role;
use harvest_kit::issuer::{Issuer, bearer};
use harvest_proto::common::v1::{
    AuditAction, AuditRecord, ListAuditRecordsRequest, ListAuditRecordsResponse,
};
use harvest_proto::payments::v1::{Payment, RefundRequest};
use tonic::{Code, Status};

use crate::helpers::TestPayments;

const OPERATOR: &str = "ops-li";

struct Audited {
    payments: TestPayments,
    issuer: Issuer,
}

impl Audited {
    async fn start() -> Audited {
        let issuer = harvest_testkit::issuer().expect("an issuer");
        let auth = issuer.config();
        let payments = TestPayments::start_with(move |config| config.auth = auth).await;
        Audited { payments, issuer }
    }

    async fn refund(
        &self,
        role: Role,
        order_id: &str,
        amount_fen: i64,
        reason: &str,
        key: &str,
    ) -> Result<Payment, Status> {
        let token = self.issuer.token(role, OPERATOR);
        let request = RefundRequest {
            order_id: order_id.to_owned(),
            amount_fen,
            reason: reason.to_owned(),
            idempotency_key: key.to_owned(),
        };
        self.payments
            .client
            .clone()
            .refund(bearer(request, Some(&token)))
            .await
            .map(tonic::Response::into_inner)
    }

    async fn list_as(
        &self,
        token: Option<&str>,
        request: ListAuditRecordsRequest,
    ) -> Result<ListAuditRecordsResponse, Status> {
        self.payments
            .client
            .clone()
            .list_audit_records(bearer(request, token))
            .await
            .map(tonic::Response::into_inner)
    }

    /// Every record of `subject` (all when empty), a page of two at a time.
    async fn records(&self, subject: &str) -> Vec<AuditRecord> {
        let token = self.issuer.token(Role::Operator, OPERATOR);
        let mut records = Vec::new();
        let mut page_token = String::new();
        loop {
            let request = ListAuditRecordsRequest {
                subject: subject.to_owned(),
                page_size: 2,
                page_token,
            };
            let page = self
                .list_as(Some(&token), request)
                .await
                .expect("an operator lists the audit log");
            records.extend(page.records);
            if page.next_page_token.is_empty() {
                return records;
            }
            page_token = page.next_page_token;
        }
    }
}

#[tokio::test]
async fn a_refund_is_recorded_once_with_its_operator_and_reason() {
    let audited = Audited::start().await;
    let order = audited.payments.paid_order(2_000, true).await;
    let order_id = order.order_id.as_str();

    let refunded = audited
        .refund(
            Role::Operator,
            order_id,
            500,
            "bruised apples",
            "rfd-audit-1",
        )
        .await
        .expect("refunded");
    assert_eq!(refunded.refunded_fen, 500);
    let records = audited.records(order_id).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    let record = &records[0];
    assert_eq!(record.action(), AuditAction::PaymentRefunded);
    assert_eq!(
        (record.actor.as_str(), record.actor_role.as_str()),
        (OPERATOR, "operator")
    );
    assert_eq!(record.subject, order_id);
    assert_eq!(
        record.detail,
        "refunded 500 fen of 2000 fen captured (500 fen refunded in all)"
    );
    assert_eq!(record.reason, "bruised apples");

    // The same refund again (a retry with its key) records nothing more.
    let again = audited
        .refund(
            Role::Operator,
            order_id,
            500,
            "bruised apples",
            "rfd-audit-1",
        )
        .await
        .expect("the same refund");
    assert_eq!(again.refunded_fen, 500);
    assert_eq!(audited.records(order_id).await, records);
}

#[tokio::test]
async fn refused_refunds_record_nothing() {
    let audited = Audited::start().await;
    let order = audited.payments.paid_order(2_000, true).await;
    let order_id = order.order_id.as_str();

    let too_much = audited
        .refund(
            Role::Operator,
            order_id,
            5_000,
            "bruised apples",
            "rfd-audit-2",
        )
        .await;
    assert_eq!(
        too_much.map_err(|status| status.code()),
        Err(Code::FailedPrecondition)
    );
    let no_reason = audited
        .refund(Role::Operator, order_id, 500, "  ", "rfd-audit-3")
        .await;
    assert_eq!(
        no_reason.map_err(|status| status.code()),
        Err(Code::InvalidArgument)
    );
    let not_captured = audited.payments.paid_order(700, false).await;
    let early = audited
        .refund(
            Role::Operator,
            &not_captured.order_id,
            100,
            "bruised apples",
            "rfd-audit-4",
        )
        .await;
    assert_eq!(
        early.map_err(|status| status.code()),
        Err(Code::FailedPrecondition)
    );
    let buyer = audited
        .refund(Role::Buyer, order_id, 500, "bruised apples", "rfd-audit-5")
        .await;
    assert_eq!(
        buyer.map_err(|status| status.code()),
        Err(Code::PermissionDenied)
    );
    assert_eq!(audited.records("").await, []);

    // The operator's refund, after them, is the log's only record.
    audited
        .refund(
            Role::Operator,
            order_id,
            500,
            "bruised apples",
            "rfd-audit-6",
        )
        .await
        .expect("refunded");
    let records = audited.records("").await;
    let subjects: Vec<&str> = records
        .iter()
        .map(|record| record.subject.as_str())
        .collect();
    assert_eq!(subjects, [order_id]);
}

#[tokio::test]
async fn the_log_lists_newest_first_by_order_and_to_operators_only() {
    let audited = Audited::start().await;
    let first = audited.payments.paid_order(3_000, true).await;
    let second = audited.payments.paid_order(1_000, true).await;
    for (order, amount, key) in [
        (&first, 100, "rfd-a"),
        (&second, 200, "rfd-b"),
        (&first, 300, "rfd-c"),
    ] {
        audited
            .refund(
                Role::Operator,
                &order.order_id,
                amount,
                "late delivery",
                key,
            )
            .await
            .expect("refunded");
    }
    let all = audited.records("").await;
    let details: Vec<&str> = all.iter().map(|record| record.detail.as_str()).collect();
    assert_eq!(
        details,
        [
            "refunded 300 fen of 3000 fen captured (400 fen refunded in all)",
            "refunded 200 fen of 1000 fen captured (200 fen refunded in all)",
            "refunded 100 fen of 3000 fen captured (100 fen refunded in all)",
        ]
    );
    let of_first = audited.records(&first.order_id).await;
    assert_eq!(of_first, [all[0].clone(), all[2].clone()]);

    for role in [Role::Buyer, Role::Seller, Role::Courier, Role::Partner] {
        let token = audited.issuer.token(role, OPERATOR);
        let refused = audited
            .list_as(Some(&token), ListAuditRecordsRequest::default())
            .await;
        assert_eq!(
            refused.map_err(|status| status.code()),
            Err(Code::PermissionDenied),
            "{role:?}"
        );
    }
    let anonymous = audited
        .list_as(None, ListAuditRecordsRequest::default())
        .await;
    assert_eq!(
        anonymous.map_err(|status| status.code()),
        Err(Code::Unauthenticated)
    );
}
