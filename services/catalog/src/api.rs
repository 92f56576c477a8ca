//! The catalog's gRPC API.

use std::time::SystemTime;

use harvest_kit::audit::{AuditLog, Change};
use harvest_kit::auth::{self, Identity, Role, Rule, caller};
use harvest_proto::catalog::v1::catalog_service_server::CatalogService;
use harvest_proto::catalog::v1::{
    Category, CreateProductRequest, GetProductRequest, GetStockRequest, ListProductsRequest,
    ListProductsResponse, Product, ReceiveStockLotRequest, Stock, StockLot, UpdatePriceRequest,
    UpdatePurchaseLimitRequest,
};
use harvest_proto::common::v1::{AuditAction, ListAuditRecordsRequest, ListAuditRecordsResponse};
use tonic::{Request, Response, Status};

use crate::error::CatalogError;
use crate::model;
use crate::store::{CatalogStore, CreateClaim, ListFilter, LotState, ReceiveResult, unix_millis};
use harvest_domain::Date;

/// Who may call each method of the API, by role: one rule a method. A rule
/// does not say whose records the caller may touch (a buyer's own orders, a
/// seller's own products).
pub const RULES: &[Rule] = &[
    Rule {
        method: "/harvest.catalog.v1.CatalogService/CreateProduct",
        roles: &[Role::Seller],
    },
    Rule {
        method: "/harvest.catalog.v1.CatalogService/GetProduct",
        roles: &Role::ALL,
    },
    Rule {
        method: "/harvest.catalog.v1.CatalogService/ListProducts",
        roles: &Role::ALL,
    },
    Rule {
        method: "/harvest.catalog.v1.CatalogService/UpdatePrice",
        roles: &[Role::Seller],
    },
    Rule {
        method: "/harvest.catalog.v1.CatalogService/UpdatePurchaseLimit",
        roles: &[Role::Seller],
    },
    Rule {
        method: "/harvest.catalog.v1.CatalogService/ReceiveStockLot",
        roles: &[Role::Seller],
    },
    Rule {
        method: "/harvest.catalog.v1.CatalogService/GetStock",
        roles: &[Role::Seller, Role::Operator],
    },
    Rule {
        method: "/harvest.catalog.v1.CatalogService/ListAuditRecords",
        roles: &[Role::Operator],
    },
];

const DEFAULT_PAGE_SIZE: usize = 50;
const MAX_PAGE_SIZE: usize = 200;

pub struct CatalogApi {
    store: CatalogStore,
    /// Price changes and stock receipts, for operators.
    audit: AuditLog,
    /// Days a lot's best-before must leave for delivery
    /// (`reservation.delivery_lead_days`): what a buyer can order.
    lead_days: u32,
}

impl CatalogApi {
    pub fn new(store: CatalogStore, audit: AuditLog, lead_days: u32) -> Self {
        CatalogApi {
            store,
            audit,
            lead_days,
        }
    }

    /// The earliest best-before a reservation takes today.
    fn orderable_from(&self) -> Date {
        Date::today().plus_days(self.lead_days as i32)
    }

    async fn existing_product(
        &self,
        field: &str,
        product_id: &str,
    ) -> Result<Product, CatalogError> {
        let id = model::parse_id(field, product_id)?;
        self.store
            .product(id.as_str())
            .await?
            .ok_or_else(|| CatalogError::NotFound(format!("product {id} does not exist")))
    }

    /// The product `product_id`, if the caller may manage it: a seller
    /// only their own.
    async fn own_product(
        &self,
        caller: Option<&Identity>,
        product_id: &str,
    ) -> Result<Product, CatalogError> {
        let product = self.existing_product("product_id", product_id).await?;
        let seller = product
            .seller
            .as_ref()
            .map_or("", |seller| &seller.seller_id);
        auth::owned_by(
            caller,
            Role::Seller,
            seller,
            format_args!("product {}", product.product_id),
        )?;
        Ok(product)
    }

    async fn create_product(
        &self,
        caller: Option<&Identity>,
        mut request: CreateProductRequest,
    ) -> Result<Product, CatalogError> {
        if caller.is_some_and(|caller| caller.role == Role::Seller) {
            let seller = request.seller.get_or_insert_default();
            auth::act_as(
                caller,
                Role::Seller,
                "seller.seller_id",
                &mut seller.seller_id,
            )?;
        }
        let product = model::new_product(&request)?;
        if !request.request_id.is_empty() {
            let request_id = model::parse_id("request_id", &request.request_id)?;
            let product_id = harvest_domain::Id::parse(&product.product_id)
                .map_err(|e| CatalogError::invalid("product_id", e))?;
            if let Some(earlier) = self
                .store
                .claim_create_request(&request_id, &product_id)
                .await?
            {
                let found = self.earlier_creation(&earlier, &product).await?;
                if let Some(found) = found {
                    return Ok(found);
                }
                // The earlier call never stored its product, and its lease
                // has run out: this call creates it instead.
                if !self
                    .store
                    .take_over_create_request(&request_id, &earlier, &product_id)
                    .await?
                {
                    return Err(still_being_created(&earlier));
                }
                tracing::info!(
                    request_id = %request_id,
                    earlier_product_id = %earlier.product_id,
                    "a create request whose first call stored nothing is taken over"
                );
            }
        }
        self.store.insert_product(&product).await?;
        tracing::info!(product_id = %product.product_id, "product created");
        Ok(product)
    }

    /// The product an earlier call with the same request id created; `None`
    /// when that call never stored it and its lease has run out.
    async fn earlier_creation(
        &self,
        earlier: &CreateClaim,
        wanted: &Product,
    ) -> Result<Option<Product>, CatalogError> {
        let earlier_id = &earlier.product_id;
        // The earlier call may still be writing it.
        for _ in 0..50 {
            if let Some(found) = self.store.product(earlier_id).await? {
                if model::same_listing(&found, wanted) {
                    return Ok(Some(found));
                }
                return Err(CatalogError::AlreadyExists(format!(
                    "request_id was already used to create product {earlier_id} with different details"
                )));
            }
            if earlier.lapsed(unix_millis(SystemTime::now())) {
                return Ok(None);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Err(still_being_created(earlier))
    }

    async fn list_products(
        &self,
        request: ListProductsRequest,
    ) -> Result<ListProductsResponse, CatalogError> {
        let page_size =
            harvest_domain::page_size(request.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
                .map_err(|reason| CatalogError::invalid("page_size", reason))?;
        let category = match request.category {
            0 => None,
            value if Category::try_from(value).is_ok() => Some(value),
            _ => {
                return Err(CatalogError::invalid(
                    "category",
                    "must be a known category",
                ));
            }
        };
        let seller_id = match request.seller_id.as_str() {
            "" => None,
            id => Some(model::parse_id("seller_id", id)?.to_string()),
        };
        let province = Some(request.origin_province.trim().to_owned()).filter(|p| !p.is_empty());
        let after = match request.page_token.as_str() {
            "" => None,
            token => Some(decode_page_token(token)?),
        };
        let filter = ListFilter {
            category,
            province,
            seller_id,
        };
        let (found, more) = self
            .store
            .list_products(&filter, after.as_deref(), page_size)
            .await?;
        let orderable_from = self.orderable_from();
        let products: Vec<Product> = found
            .into_iter()
            .map(|(product, lots)| with_availability(product, &lots, orderable_from))
            .collect();
        let next_page_token = match products.last() {
            Some(last) if more => encode_page_token(&last.product_id),
            _ => String::new(),
        };
        Ok(ListProductsResponse {
            products,
            next_page_token,
        })
    }

    async fn update_price(
        &self,
        caller: Option<&Identity>,
        request: UpdatePriceRequest,
    ) -> Result<Product, CatalogError> {
        let id = model::parse_id("product_id", &request.product_id)?;
        let price = model::price("price_fen", request.price_fen)?;
        self.own_product(caller, id.as_str()).await?;
        let (previous, product) = self
            .store
            .update_price(id.as_str(), price.get())
            .await?
            .ok_or_else(|| CatalogError::NotFound(format!("product {id} does not exist")))?;
        tracing::info!(product_id = %id, price_fen = price.get(), "price updated");
        if previous != price.get() {
            let updated_ms = product
                .updated_at
                .and_then(|at| std::time::SystemTime::try_from(at).ok())
                .map_or(0, crate::store::unix_millis)
                .to_string();
            let change = Change {
                action: AuditAction::PriceChanged,
                subject: id.as_str(),
                detail: format!("price {previous} → {} fen", price.get()),
                reason: "",
                cause: &[id.as_str(), &updated_ms, &price.get().to_string()],
            };
            self.audit.record(caller, change).await;
        }
        Ok(product)
    }

    async fn update_purchase_limit(
        &self,
        caller: Option<&Identity>,
        request: UpdatePurchaseLimitRequest,
    ) -> Result<Product, CatalogError> {
        let id = model::parse_id("product_id", &request.product_id)?;
        let limit = model::per_buyer_limit("per_buyer_limit", request.per_buyer_limit)?;
        self.own_product(caller, id.as_str()).await?;
        let product = self
            .store
            .update_purchase_limit(id.as_str(), limit)
            .await?
            .ok_or_else(|| CatalogError::NotFound(format!("product {id} does not exist")))?;
        tracing::info!(product_id = %id, per_buyer_limit = limit, "per-buyer limit updated");
        Ok(product)
    }

    async fn receive_stock_lot(
        &self,
        caller: Option<&Identity>,
        request: ReceiveStockLotRequest,
    ) -> Result<StockLot, CatalogError> {
        let product = self.own_product(caller, &request.product_id).await?;
        let lot = model::new_lot(&request, &product)?;
        let product_id = product.product_id.as_str();
        let result = self
            .store
            .receive_lot(
                product_id,
                lot.lot_id.as_str(),
                lot.quantity.get(),
                lot.best_before,
                lot.harvested,
            )
            .await?;
        match result {
            ReceiveResult::UnknownProduct => {
                return Err(CatalogError::NotFound(format!(
                    "product {product_id} does not exist"
                )));
            }
            ReceiveResult::Created => {
                tracing::info!(product_id, lot_id = %lot.lot_id, quantity = lot.quantity.get(), "stock lot received");
            }
            ReceiveResult::Exists {
                received,
                best_before,
                harvested,
            } => {
                let same = received == lot.quantity.get()
                    && best_before == lot.best_before
                    && harvested == lot.harvested;
                if !same {
                    return Err(CatalogError::AlreadyExists(format!(
                        "lot {} of product {product_id} was already received with different details",
                        lot.lot_id
                    )));
                }
            }
        }
        // A retry of a receipt whose record could not be written writes it;
        // one whose record is there adds none.
        let change = Change {
            action: AuditAction::StockReceived,
            subject: product_id,
            detail: format!(
                "lot {}: {}, harvested {}, best before {}",
                lot.lot_id,
                model::quantity_text(lot.quantity.get(), product.unit()),
                lot.harvested,
                lot.best_before
            ),
            reason: "",
            cause: &[product_id, lot.lot_id.as_str()],
        };
        self.audit.record(caller, change).await;
        let lots = self.store.lots(product_id).await?;
        lots.iter()
            .find(|stored| stored.lot_id == lot.lot_id.as_str())
            .map(|stored| model::lot_to_proto(product_id, stored))
            .ok_or_else(|| CatalogError::NotFound(format!("lot {} vanished", lot.lot_id)))
    }

    async fn stock(
        &self,
        caller: Option<&Identity>,
        request: GetStockRequest,
    ) -> Result<Stock, CatalogError> {
        let product = self.own_product(caller, &request.product_id).await?;
        let lots = self.store.lots(&product.product_id).await?;
        let lots: Vec<StockLot> = lots
            .iter()
            .map(|lot| model::lot_to_proto(&product.product_id, lot))
            .collect();
        Ok(Stock {
            product_id: product.product_id,
            on_hand: lots.iter().map(|lot| lot.on_hand).sum(),
            available: lots.iter().map(|lot| lot.available).sum(),
            reserved: lots.iter().map(|lot| lot.reserved).sum(),
            lots,
        })
    }
}

/// `product` with what a buyer can order of it: the units of the lots a
/// reservation would take from.
fn with_availability(mut product: Product, lots: &[LotState], orderable_from: Date) -> Product {
    product.availability = Some(model::availability(lots, orderable_from));
    product
}

fn encode_page_token(product_id: &str) -> String {
    harvest_domain::encode_page_token(product_id)
}

fn decode_page_token(token: &str) -> Result<String, CatalogError> {
    harvest_domain::decode_id_page_token(token)
        .ok_or_else(|| CatalogError::invalid("page_token", harvest_domain::NOT_A_PAGE_TOKEN))
}

#[tonic::async_trait]
impl CatalogService for CatalogApi {
    async fn create_product(
        &self,
        request: Request<CreateProductRequest>,
    ) -> Result<Response<Product>, Status> {
        let caller = caller(&request);
        Ok(Response::new(
            self.create_product(caller.as_ref(), request.into_inner())
                .await?,
        ))
    }

    async fn get_product(
        &self,
        request: Request<GetProductRequest>,
    ) -> Result<Response<Product>, Status> {
        let id = model::parse_id("product_id", &request.into_inner().product_id)?;
        let (product, lots) = self
            .store
            .product_with_lots(id.as_str())
            .await
            .map_err(CatalogError::from)?
            .ok_or_else(|| CatalogError::NotFound(format!("product {id} does not exist")))?;
        Ok(Response::new(with_availability(
            product,
            &lots,
            self.orderable_from(),
        )))
    }

    async fn list_products(
        &self,
        request: Request<ListProductsRequest>,
    ) -> Result<Response<ListProductsResponse>, Status> {
        Ok(Response::new(
            self.list_products(request.into_inner()).await?,
        ))
    }

    async fn update_price(
        &self,
        request: Request<UpdatePriceRequest>,
    ) -> Result<Response<Product>, Status> {
        let caller = caller(&request);
        Ok(Response::new(
            self.update_price(caller.as_ref(), request.into_inner())
                .await?,
        ))
    }

    async fn update_purchase_limit(
        &self,
        request: Request<UpdatePurchaseLimitRequest>,
    ) -> Result<Response<Product>, Status> {
        let caller = caller(&request);
        Ok(Response::new(
            self.update_purchase_limit(caller.as_ref(), request.into_inner())
                .await?,
        ))
    }

    async fn receive_stock_lot(
        &self,
        request: Request<ReceiveStockLotRequest>,
    ) -> Result<Response<StockLot>, Status> {
        let caller = caller(&request);
        Ok(Response::new(
            self.receive_stock_lot(caller.as_ref(), request.into_inner())
                .await?,
        ))
    }

    async fn get_stock(
        &self,
        request: Request<GetStockRequest>,
    ) -> Result<Response<Stock>, Status> {
        let caller = caller(&request);
        Ok(Response::new(
            self.stock(caller.as_ref(), request.into_inner()).await?,
        ))
    }

    async fn list_audit_records(
        &self,
        request: Request<ListAuditRecordsRequest>,
    ) -> Result<Response<ListAuditRecordsResponse>, Status> {
        Ok(Response::new(self.audit.list(request.into_inner()).await?))
    }
}

/// The answer to a retry while the first call may still store its product.
fn still_being_created(earlier: &CreateClaim) -> CatalogError {
    CatalogError::FailedPrecondition(format!(
        "request_id is taken by product {}, which is still being created; retry",
        earlier.product_id
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_reject_garbage() {
        let token = encode_page_token("prd_0190abc");
        assert_eq!(
            decode_page_token(&token).ok(),
            Some("prd_0190abc".to_owned())
        );
        for bad in ["zz", "abc", "00", "", &encode_page_token("{bad}")] {
            assert!(decode_page_token(bad).is_err(), "{bad:?}");
        }
    }
}

#[cfg(test)]
mod access_rules {
    #[test]
    fn every_method_has_one_rule() {
        harvest_kit::auth::check_rules("harvest.catalog.v1.CatalogService", super::RULES)
            .expect("one rule a method");
    }
}
