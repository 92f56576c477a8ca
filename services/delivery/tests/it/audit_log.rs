//! The delivery audit log, with authentication on: an operator's
//! confirmation without the buyer's code recorded once, with the operator
//! and the reason; nothing for a refused override, a repeated one, or a
//! courier's delivery with the code; listed to operators only.

use harvest_domain::Id;
use harvest_kit::auth::Role;
use harvest_kit::issuer::{Issuer, bearer};
use harvest_proto::common::v1::{
    AuditAction, AuditRecord, ListAuditRecordsRequest, ListAuditRecordsResponse,
};
use harvest_proto::delivery::v1::{
    ConfirmDeliveryRequest, ConfirmPickupRequest, Shipment, ShipmentState,
};
use tonic::{Code, Status};

use crate::helpers::{DELIVERY_CODE, HANGZHOU, TestDelivery, courier_request, offset};

const OPERATOR: &str = "ops-li";
const COURIER: &str = "mine";
const REASON: &str = "the buyer was away; the neighbour signed";

struct Audited {
    delivery: TestDelivery,
    issuer: Issuer,
}

impl Audited {
    /// A delivery service with a courier of the test partner near Hangzhou.
    async fn start() -> Audited {
        let issuer = harvest_testkit::issuer().expect("an issuer");
        let auth = issuer.config();
        let delivery = TestDelivery::start_with(move |config| config.auth = auth).await;
        let partner = issuer.token(Role::Partner, "partner-local");
        let registration = courier_request(COURIER, "east", offset(HANGZHOU, 1.0, 0.0), 4, false);
        delivery
            .client
            .clone()
            .register_courier(bearer(registration, Some(&partner)))
            .await
            .expect("the partner registers its courier");
        Audited { delivery, issuer }
    }

    /// A new order's shipment, assigned to the courier and picked up.
    async fn picked_up_shipment(&self) -> (Id, String) {
        let order = self.delivery.confirm_at("tea", HANGZHOU, false).await;
        let assigned = self.delivery.assigned(&order).await;
        assert_eq!(assigned.courier_id, COURIER);
        let courier = self.issuer.token(Role::Courier, COURIER);
        let request = ConfirmPickupRequest {
            courier_id: String::new(),
            shipment_id: assigned.shipment_id.clone(),
        };
        self.delivery
            .client
            .clone()
            .confirm_pickup(bearer(request, Some(&courier)))
            .await
            .expect("picked up");
        (order, assigned.shipment_id)
    }

    async fn deliver(
        &self,
        role: Role,
        subject: &str,
        shipment_id: &str,
        code: &str,
        override_reason: &str,
    ) -> Result<Shipment, Status> {
        let token = self.issuer.token(role, subject);
        let request = ConfirmDeliveryRequest {
            courier_id: String::new(),
            shipment_id: shipment_id.to_owned(),
            recipient_name: "Chen Jing".to_owned(),
            proof_reference: String::new(),
            delivery_code: code.to_owned(),
            override_reason: override_reason.to_owned(),
        };
        self.delivery
            .client
            .clone()
            .confirm_delivery(bearer(request, Some(&token)))
            .await
            .map(tonic::Response::into_inner)
    }

    async fn list_as(
        &self,
        token: Option<&str>,
        request: ListAuditRecordsRequest,
    ) -> Result<ListAuditRecordsResponse, Status> {
        self.delivery
            .client
            .clone()
            .list_audit_records(bearer(request, token))
            .await
            .map(tonic::Response::into_inner)
    }

    /// The records of `subject` (all when empty): one page holds them all.
    async fn records(&self, subject: &str) -> Vec<AuditRecord> {
        let token = self.issuer.token(Role::Operator, OPERATOR);
        let request = ListAuditRecordsRequest {
            subject: subject.to_owned(),
            ..ListAuditRecordsRequest::default()
        };
        let page = self
            .list_as(Some(&token), request)
            .await
            .expect("an operator lists the audit log");
        assert_eq!(page.next_page_token, "");
        page.records
    }
}

#[tokio::test]
async fn an_override_is_recorded_once_with_its_operator_and_reason() {
    let audited = Audited::start().await;
    let (order, shipment_id) = audited.picked_up_shipment().await;

    let delivered = audited
        .deliver(Role::Operator, OPERATOR, &shipment_id, "", REASON)
        .await
        .expect("an operator confirms without the code");
    assert_eq!(delivered.state(), ShipmentState::Delivered);
    let records = audited.records(&shipment_id).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    let record = &records[0];
    assert_eq!(record.action(), AuditAction::DeliveryOverridden);
    assert_eq!(
        (record.actor.as_str(), record.actor_role.as_str()),
        (OPERATOR, "operator")
    );
    assert_eq!(record.subject, shipment_id);
    assert_eq!(
        record.detail,
        format!(
            "delivered to Chen Jing for courier {COURIER} without the buyer's code (order {order})"
        )
    );
    assert_eq!(record.reason, REASON);

    // Confirmed again, by the same operator or another: nothing more.
    audited
        .deliver(Role::Operator, OPERATOR, &shipment_id, "", REASON)
        .await
        .expect("already delivered");
    audited
        .deliver(
            Role::Operator,
            "ops-wang",
            &shipment_id,
            "",
            "a second look",
        )
        .await
        .expect("already delivered");
    assert_eq!(audited.records("").await, records);
}

#[tokio::test]
async fn refused_overrides_and_deliveries_with_the_code_record_nothing() {
    let audited = Audited::start().await;
    let (_, shipment_id) = audited.picked_up_shipment().await;

    let no_reason = audited
        .deliver(Role::Operator, OPERATOR, &shipment_id, "", " ")
        .await;
    assert_eq!(
        no_reason.map_err(|status| status.code()),
        Err(Code::InvalidArgument)
    );
    let wrong_code = audited
        .deliver(Role::Courier, COURIER, &shipment_id, "000000", "")
        .await;
    assert_eq!(
        wrong_code.map_err(|status| status.code()),
        Err(Code::PermissionDenied)
    );
    assert_eq!(audited.records("").await, []);

    // The courier delivers with the buyer's code: no override to record,
    // and an operator confirming it afterwards records none either.
    audited
        .deliver(Role::Courier, COURIER, &shipment_id, DELIVERY_CODE, "")
        .await
        .expect("delivered with the code");
    audited
        .deliver(Role::Operator, OPERATOR, &shipment_id, "", REASON)
        .await
        .expect("already delivered");
    assert_eq!(audited.records("").await, []);

    // An override of another shipment, after them, is the log's only record.
    let (_, overridden) = audited.picked_up_shipment().await;
    audited
        .deliver(Role::Operator, OPERATOR, &overridden, "", REASON)
        .await
        .expect("overridden");
    let records = audited.records("").await;
    let subjects: Vec<&str> = records
        .iter()
        .map(|record| record.subject.as_str())
        .collect();
    assert_eq!(subjects, [overridden.as_str()]);
}

#[tokio::test]
async fn only_operators_list_the_log_and_by_shipment() {
    let audited = Audited::start().await;
    let (_, overridden) = audited.picked_up_shipment().await;
    let (_, other) = audited.picked_up_shipment().await;
    audited
        .deliver(Role::Operator, OPERATOR, &overridden, "", REASON)
        .await
        .expect("overridden");
    audited
        .deliver(Role::Operator, OPERATOR, &other, "", "the code was lost")
        .await
        .expect("overridden");
    let all = audited.records("").await;
    let subjects: Vec<&str> = all.iter().map(|record| record.subject.as_str()).collect();
    assert_eq!(
        subjects,
        [other.as_str(), overridden.as_str()],
        "newest first"
    );
    assert_eq!(audited.records(&overridden).await, [all[1].clone()]);

    for role in [Role::Buyer, Role::Seller, Role::Courier, Role::Partner] {
        let token = audited.issuer.token(role, COURIER);
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
