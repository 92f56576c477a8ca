//! Checking ARCHITECTURE's invariants against a running system, from the
//! outside: stock arithmetic for every product, every acknowledged order
//! ended, no order charged twice, no money held for a cancelled order.

use std::collections::HashMap;

use crate::Channel;
use futures::StreamExt;
use harvest_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use harvest_proto::catalog::v1::{GetStockRequest, ListProductsRequest};
use harvest_proto::payments::v1::payments_service_client::PaymentsServiceClient;
use harvest_proto::payments::v1::{GetPaymentRequest, LedgerEntryKind, PaymentState};

use crate::observer::Ending;

/// What the checks found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Findings {
    pub products_checked: usize,
    /// Units reserved or taken beyond what a lot holds, summed.
    pub oversold_units: i64,
    /// Lots whose on hand ≠ available + reserved, or with a negative count.
    pub broken_lots: Vec<String>,
    /// Acknowledged orders that did not reach DELIVERED or CANCELLED.
    pub unfinished_orders: Vec<String>,
    pub payments_checked: usize,
    /// Orders authorized or captured more than once, or captured beyond the
    /// authorization.
    pub double_charges: Vec<String>,
    /// Cancelled orders whose money is still authorized.
    pub money_held_after_cancel: Vec<String>,
}

impl Findings {
    pub fn all_clear(&self) -> bool {
        self.oversold_units == 0
            && self.broken_lots.is_empty()
            && self.unfinished_orders.is_empty()
            && self.double_charges.is_empty()
            && self.money_held_after_cancel.is_empty()
    }
}

/// Audits every product's stock through the catalog API.
pub async fn check_stock(
    catalog: &mut CatalogServiceClient<Channel>,
    findings: &mut Findings,
) -> Result<(), tonic::Status> {
    let mut page_token = String::new();
    loop {
        let page = catalog
            .list_products(ListProductsRequest {
                page_size: 200,
                page_token,
                ..Default::default()
            })
            .await?
            .into_inner();
        for product in page.products {
            let stock = catalog
                .get_stock(GetStockRequest {
                    product_id: product.product_id.clone(),
                })
                .await?
                .into_inner();
            findings.products_checked += 1;
            for lot in &stock.lots {
                findings.oversold_units +=
                    (lot.reserved - lot.on_hand).max(0) + (-lot.on_hand).max(0);
                let consistent = lot.on_hand == lot.available + lot.reserved
                    && lot.available >= 0
                    && lot.reserved >= 0
                    && lot.on_hand <= lot.received;
                if !consistent {
                    findings.broken_lots.push(format!(
                        "{} lot {}: received {}, on hand {}, available {}, reserved {}",
                        product.name,
                        lot.lot_id,
                        lot.received,
                        lot.on_hand,
                        lot.available,
                        lot.reserved
                    ));
                }
            }
        }
        if page.next_page_token.is_empty() {
            return Ok(());
        }
        page_token = page.next_page_token;
    }
}

/// Checks the payment of every order in `endings`.
pub async fn check_payments(
    payments: &PaymentsServiceClient<Channel>,
    endings: &HashMap<String, Option<Ending>>,
    findings: &mut Findings,
) {
    let checks = futures::stream::iter(endings.iter().map(|(order_id, ending)| {
        let mut payments = payments.clone();
        let order_id = order_id.clone();
        let ending = *ending;
        async move {
            let request = GetPaymentRequest {
                order_id: order_id.clone(),
            };
            let payment = payments.get_payment(request).await.ok()?.into_inner();
            let count = |kind: LedgerEntryKind| {
                payment
                    .entries
                    .iter()
                    .filter(|entry| entry.kind() == kind)
                    .count()
            };
            let doubled = count(LedgerEntryKind::Authorization) > 1
                || count(LedgerEntryKind::Capture) > 1
                || payment.captured_fen > payment.authorized_fen
                || payment.refunded_fen > payment.captured_fen;
            let held = matches!(ending, Some(Ending::Cancelled(_)))
                && matches!(
                    payment.state(),
                    PaymentState::Authorized | PaymentState::Pending
                );
            Some((order_id, doubled, held))
        }
    }))
    .buffer_unordered(32)
    .collect::<Vec<_>>()
    .await;
    for (order_id, doubled, held) in checks.into_iter().flatten() {
        findings.payments_checked += 1;
        if doubled {
            findings.double_charges.push(order_id.clone());
        }
        if held {
            findings.money_held_after_cancel.push(order_id);
        }
    }
}
