//! The catalog's audit log, with authentication on: each price change and
//! stock receipt recorded once, with its seller; nothing for a refused or
//! repeated request; listed to operators only, newest first, a page at a
//! time, by product.

use harvest_kit::auth::Role;
use harvest_kit::issuer::{Issuer, bearer};
use harvest_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use harvest_proto::catalog::v1::{Product, ReceiveStockLotRequest, UpdatePriceRequest};
use harvest_proto::common::v1::{
    AuditAction, AuditRecord, ListAuditRecordsRequest, ListAuditRecordsResponse,
};
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::helpers::{TestCatalog, date, product_request};

const SELLER: &str = "coop-luochuan";
const OPERATOR: &str = "ops-li";

struct Audited {
    catalog: TestCatalog,
    issuer: Issuer,
}

impl Audited {
    async fn start() -> Audited {
        let issuer = harvest_testkit::issuer().expect("an issuer");
        let auth = issuer.config();
        let catalog = TestCatalog::start_with(move |config| config.auth = auth).await;
        Audited { catalog, issuer }
    }

    fn client(&self) -> CatalogServiceClient<Channel> {
        self.catalog.client.clone()
    }

    fn token(&self, role: Role, subject: &str) -> String {
        self.issuer.token(role, subject)
    }

    async fn product(&self, name: &str, price_fen: i64) -> Product {
        let token = self.token(Role::Seller, SELLER);
        self.client()
            .create_product(bearer(product_request(name, price_fen), Some(&token)))
            .await
            .expect("the seller creates a product")
            .into_inner()
    }

    async fn set_price(
        &self,
        seller: &str,
        product: &Product,
        price_fen: i64,
    ) -> Result<(), Status> {
        let token = self.token(Role::Seller, seller);
        let request = UpdatePriceRequest {
            product_id: product.product_id.clone(),
            price_fen,
        };
        self.client()
            .update_price(bearer(request, Some(&token)))
            .await
            .map(drop)
    }

    async fn receive(&self, seller: &str, product: &Product, lot_id: &str) -> Result<(), Status> {
        let token = self.token(Role::Seller, seller);
        let today = harvest_domain::Date::today();
        let request = ReceiveStockLotRequest {
            product_id: product.product_id.clone(),
            lot_id: lot_id.to_owned(),
            quantity: 50,
            harvest_date: Some(date(today.plus_days(-2))),
            best_before: Some(date(today.plus_days(30))),
        };
        self.client()
            .receive_stock_lot(bearer(request, Some(&token)))
            .await
            .map(drop)
    }

    async fn list_as(
        &self,
        token: Option<&str>,
        request: ListAuditRecordsRequest,
    ) -> Result<ListAuditRecordsResponse, Status> {
        self.client()
            .list_audit_records(bearer(request, token))
            .await
            .map(tonic::Response::into_inner)
    }

    /// Every record of `subject` (every subject when empty), following pages
    /// of `page_size`, newest first.
    async fn records(&self, subject: &str, page_size: i32) -> Vec<AuditRecord> {
        let token = self.token(Role::Operator, OPERATOR);
        let mut records = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .list_as(
                    Some(&token),
                    ListAuditRecordsRequest {
                        subject: subject.to_owned(),
                        page_size,
                        page_token: page_token.clone(),
                    },
                )
                .await
                .expect("an operator lists the audit log");
            assert!(page.records.len() <= page_size as usize);
            records.extend(page.records);
            if page.next_page_token.is_empty() {
                return records;
            }
            page_token = page.next_page_token;
        }
    }
}

#[tokio::test]
async fn price_changes_and_stock_receipts_are_recorded_once_with_their_seller() {
    let audited = Audited::start().await;
    let apples = audited.product("Luochuan apples, 5 kg box", 1_200).await;
    let id = apples.product_id.as_str();

    audited
        .set_price(SELLER, &apples, 900)
        .await
        .expect("price set");
    let records = audited.records(id, 50).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    let price = &records[0];
    assert_eq!(price.action(), AuditAction::PriceChanged);
    assert_eq!(
        (price.actor.as_str(), price.actor_role.as_str()),
        (SELLER, "seller")
    );
    assert_eq!(price.subject, id);
    assert_eq!(price.detail, "price 1200 → 900 fen");
    assert_eq!(price.reason, "");
    assert!(price.record_id.starts_with("aud_"), "{}", price.record_id);
    assert!(price.at.is_some());

    // The same price again changes nothing and records nothing.
    audited
        .set_price(SELLER, &apples, 900)
        .await
        .expect("same price");
    assert_eq!(audited.records(id, 50).await.len(), 1);

    audited
        .receive(SELLER, &apples, "lot-fengqi-1")
        .await
        .expect("received");
    // A retry of the same lot is answered with it and records nothing more.
    audited
        .receive(SELLER, &apples, "lot-fengqi-1")
        .await
        .expect("the same lot");
    let records = audited.records(id, 50).await;
    assert_eq!(records.len(), 2, "{records:#?}");
    let lot = &records[0];
    assert_eq!(lot.action(), AuditAction::StockReceived);
    assert_eq!(
        (lot.actor.as_str(), lot.actor_role.as_str()),
        (SELLER, "seller")
    );
    let today = harvest_domain::Date::today();
    assert_eq!(
        lot.detail,
        format!(
            "lot lot-fengqi-1: 50 boxes, harvested {}, best before {}",
            today.plus_days(-2),
            today.plus_days(30)
        )
    );
    assert_eq!(records[1], *price, "newest first");
}

#[tokio::test]
async fn refused_requests_record_nothing() {
    let audited = Audited::start().await;
    let apples = audited.product("Luochuan apples, 5 kg box", 1_200).await;

    let another_seller = audited.set_price("coop-fuping", &apples, 1).await;
    assert_eq!(
        another_seller.map_err(|status| status.code()),
        Err(Code::PermissionDenied)
    );
    let another_seller = audited.receive("coop-fuping", &apples, "lot-x").await;
    assert_eq!(
        another_seller.map_err(|status| status.code()),
        Err(Code::PermissionDenied)
    );
    let invalid = audited.set_price(SELLER, &apples, -5).await;
    assert_eq!(
        invalid.map_err(|status| status.code()),
        Err(Code::InvalidArgument)
    );
    assert_eq!(audited.records("", 50).await, []);
    let product = audited
        .client()
        .get_product(bearer(
            harvest_proto::catalog::v1::GetProductRequest {
                product_id: apples.product_id.clone(),
            },
            Some(&audited.token(Role::Buyer, "buyer-1")),
        ))
        .await
        .expect("read")
        .into_inner();
    assert_eq!(product.price_fen, 1_200);

    // The seller's own change, after them, is the log's only record.
    audited
        .set_price(SELLER, &apples, 1_300)
        .await
        .expect("price set");
    let records = audited.records("", 50).await;
    let details: Vec<&str> = records
        .iter()
        .map(|record| record.detail.as_str())
        .collect();
    assert_eq!(details, ["price 1200 → 1300 fen"]);
}

#[tokio::test]
async fn the_log_pages_newest_first_and_filters_by_product() {
    let audited = Audited::start().await;
    let apples = audited.product("Luochuan apples, 5 kg box", 1_000).await;
    let walnuts = audited.product("Fenyang walnuts, 2 kg bag", 3_000).await;
    // Changes alternate between the two products: 1001, 3001, 1002, …
    for step in 1..=4 {
        audited
            .set_price(SELLER, &apples, 1_000 + step)
            .await
            .expect("apples");
        audited
            .set_price(SELLER, &walnuts, 3_000 + step)
            .await
            .expect("walnuts");
    }

    let all = audited.records("", 3).await;
    let details: Vec<&str> = all.iter().map(|record| record.detail.as_str()).collect();
    assert_eq!(
        details,
        [
            "price 3003 → 3004 fen",
            "price 1003 → 1004 fen",
            "price 3002 → 3003 fen",
            "price 1002 → 1003 fen",
            "price 3001 → 3002 fen",
            "price 1001 → 1002 fen",
            "price 3000 → 3001 fen",
            "price 1000 → 1001 fen",
        ]
    );
    assert_eq!(audited.records("", 200).await, all, "the same in one page");

    let of_apples = audited.records(&apples.product_id, 3).await;
    let expected: Vec<&AuditRecord> = all
        .iter()
        .filter(|record| record.subject == apples.product_id)
        .collect();
    assert_eq!(of_apples.iter().collect::<Vec<_>>(), expected);
    assert_eq!(of_apples.len(), 4);
    assert_eq!(of_apples[0].detail, "price 1003 → 1004 fen");

    let operator = audited.token(Role::Operator, OPERATOR);
    let garbage = audited
        .list_as(
            Some(&operator),
            ListAuditRecordsRequest {
                page_token: "not-a-token".to_owned(),
                ..ListAuditRecordsRequest::default()
            },
        )
        .await;
    assert_eq!(
        garbage.map_err(|status| status.code()),
        Err(Code::InvalidArgument)
    );
}

#[tokio::test]
async fn only_operators_list_the_log() {
    let audited = Audited::start().await;
    let apples = audited.product("Luochuan apples, 5 kg box", 1_200).await;
    audited
        .set_price(SELLER, &apples, 900)
        .await
        .expect("price set");
    for role in [Role::Buyer, Role::Seller, Role::Courier, Role::Partner] {
        let token = audited.token(role, SELLER);
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
    assert_eq!(audited.records("", 50).await.len(), 1);
}
