//! Who may do what, with authentication on: every method of the four
//! services called without a token, with a token of another issuer, and as
//! each role; then each role reaching for what is someone else's.

use harvest_kit::auth::Role;
use harvest_kit::issuer::{Issuer, LOCAL_ISSUER, bearer};
use harvest_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use harvest_proto::catalog::v1::{
    Category, CollectionPointInput, CreateProductRequest, GetProductRequest, GetStockRequest,
    ListProductsRequest, ReceiveStockLotRequest, Unit, UpdatePriceRequest,
    UpdatePurchaseLimitRequest,
};
use harvest_proto::common::v1::{
    Date, GeoPoint, ListAuditRecordsRequest, Origin, Seller, SellerKind,
};
use harvest_proto::delivery::v1::delivery_service_client::DeliveryServiceClient;
use harvest_proto::delivery::v1::{
    ConfirmDeliveryRequest, ConfirmPickupRequest, GetShipmentRequest, ListCouriersRequest,
    RegisterCourierRequest, ReportFailureRequest, ShipmentState, StreamAssignmentsRequest,
    UpdateCourierStatusRequest, Vehicle,
};
use harvest_proto::orders::v1::orders_service_client::OrdersServiceClient;
use harvest_proto::orders::v1::{
    CancelOrderRequest, GetOrderRequest, ListOrdersRequest, PlaceOrderRequest, WatchOrderRequest,
};
use harvest_proto::payments::v1::payments_service_client::PaymentsServiceClient;
use harvest_proto::payments::v1::{
    GetPaymentRequest, ListPaymentsRequest, ListPayoutsRequest, RefundRequest,
};
use harvest_stack::ServiceKind;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::helpers::{ANJI, FUPING, PARTNER, System};

const BUYER: &str = "buyer-nanjing-1";
const SELLER: &str = "coop-anji";
const COURIER: &str = "courier-access-1";
const OPERATOR: &str = "ops-li";

/// Who each method is for, as the README's table says (`ListAuditRecords`,
/// a method of three services, named with its service).
const MATRIX: &[(&str, &[Role])] = &[
    ("CreateProduct", &[Role::Seller]),
    ("GetProduct", &Role::ALL),
    ("ListProducts", &Role::ALL),
    ("UpdatePrice", &[Role::Seller]),
    ("UpdatePurchaseLimit", &[Role::Seller]),
    ("ReceiveStockLot", &[Role::Seller]),
    ("GetStock", &[Role::Seller, Role::Operator]),
    ("catalog ListAuditRecords", &[Role::Operator]),
    ("PlaceOrder", &[Role::Buyer]),
    ("GetOrder", &[Role::Buyer, Role::Operator]),
    ("ListOrders", &[Role::Buyer, Role::Operator]),
    ("CancelOrder", &[Role::Buyer]),
    ("WatchOrder", &[Role::Buyer, Role::Operator]),
    ("GetPayment", &[Role::Buyer, Role::Operator]),
    ("ListPayments", &[Role::Operator]),
    ("Refund", &[Role::Operator]),
    ("payments ListAuditRecords", &[Role::Operator]),
    ("ListPayouts", &[Role::Seller, Role::Operator]),
    ("RegisterCourier", &[Role::Partner]),
    ("UpdateCourierStatus", &[Role::Courier, Role::Partner]),
    ("StreamAssignments", &[Role::Courier]),
    ("ConfirmPickup", &[Role::Courier]),
    ("ConfirmDelivery", &[Role::Courier, Role::Operator]),
    ("ReportFailure", &[Role::Courier]),
    ("GetShipment", &[Role::Courier, Role::Operator]),
    ("ListCouriers", &[Role::Partner, Role::Operator]),
    ("delivery ListAuditRecords", &[Role::Operator]),
];

/// The services' clients without a token of their own: each call carries
/// the one it is given.
struct Raw {
    catalog: CatalogServiceClient<Channel>,
    orders: OrdersServiceClient<Channel>,
    payments: PaymentsServiceClient<Channel>,
    delivery: DeliveryServiceClient<Channel>,
}

impl Raw {
    async fn connect(system: &System) -> Raw {
        let channel = |kind| {
            let endpoint = system.stack.endpoint(kind).expect("running");
            async move {
                Channel::from_shared(endpoint)
                    .expect("an endpoint")
                    .connect()
                    .await
                    .expect("connected")
            }
        };
        Raw {
            catalog: CatalogServiceClient::new(channel(ServiceKind::Catalog).await),
            orders: OrdersServiceClient::new(channel(ServiceKind::Orders).await),
            payments: PaymentsServiceClient::new(channel(ServiceKind::Payments).await),
            delivery: DeliveryServiceClient::new(channel(ServiceKind::Delivery).await),
        }
    }
}

/// What the calls of the matrix act on: each role's own.
struct Own {
    /// The buyer's order, as placed.
    order: PlaceOrderRequest,
    product_id: String,
    order_id: String,
    shipment_id: String,
}

fn subject(role: Role) -> &'static str {
    match role {
        Role::Buyer => BUYER,
        Role::Seller => SELLER,
        Role::Courier => COURIER,
        Role::Partner => PARTNER,
        Role::Operator => OPERATOR,
    }
}

/// Calls `method` with `token` (none: no header), on the caller's own
/// records; only the status matters.
async fn call(raw: &mut Raw, own: &Own, method: &str, token: Option<&str>) -> Result<(), Status> {
    let product_id = own.product_id.clone();
    let order_id = own.order_id.clone();
    let shipment_id = own.shipment_id.clone();
    let today = harvest_domain::Date::today();
    let (year, month, day) = today.plus_days(-1).ymd();
    match method {
        "CreateProduct" => {
            let request = CreateProductRequest {
                seller: Some(Seller {
                    seller_id: String::new(),
                    name: "Anji cooperative".to_owned(),
                    kind: SellerKind::Cooperative.into(),
                    origin: Some(Origin {
                        village: "Dongcun".to_owned(),
                        county: "Anji".to_owned(),
                        province: "Zhejiang".to_owned(),
                    }),
                }),
                name: "Anji bamboo shoots".to_owned(),
                category: Category::Vegetable.into(),
                unit: Unit::Kilogram.into(),
                price_fen: 1_200,
                perishable: true,
                shelf_life_days: 5,
                cold_chain: false,
                collection_point: Some(CollectionPointInput {
                    name: "Anji collection point".to_owned(),
                    location: Some(ANJI.location()),
                }),
                request_id: "access-matrix".to_owned(),
                per_buyer_limit: 0,
            };
            raw.catalog
                .create_product(bearer(request, token))
                .await
                .map(drop)
        }
        "GetProduct" => raw
            .catalog
            .get_product(bearer(GetProductRequest { product_id }, token))
            .await
            .map(drop),
        "ListProducts" => raw
            .catalog
            .list_products(bearer(ListProductsRequest::default(), token))
            .await
            .map(drop),
        "UpdatePrice" => raw
            .catalog
            .update_price(bearer(
                UpdatePriceRequest {
                    product_id,
                    price_fen: 4_800,
                },
                token,
            ))
            .await
            .map(drop),
        "UpdatePurchaseLimit" => raw
            .catalog
            .update_purchase_limit(bearer(
                UpdatePurchaseLimitRequest {
                    product_id,
                    per_buyer_limit: 0,
                },
                token,
            ))
            .await
            .map(drop),
        "ReceiveStockLot" => raw
            .catalog
            .receive_stock_lot(bearer(
                ReceiveStockLotRequest {
                    product_id,
                    lot_id: "access-lot".to_owned(),
                    quantity: 5,
                    harvest_date: Some(Date { year, month, day }),
                    best_before: None,
                },
                token,
            ))
            .await
            .map(drop),
        "GetStock" => raw
            .catalog
            .get_stock(bearer(GetStockRequest { product_id }, token))
            .await
            .map(drop),
        "catalog ListAuditRecords" => raw
            .catalog
            .list_audit_records(bearer(ListAuditRecordsRequest::default(), token))
            .await
            .map(drop),
        "PlaceOrder" => {
            // The order the setup placed: the same key, the same request.
            raw.orders
                .place_order(bearer(own.order.clone(), token))
                .await
                .map(drop)
        }
        "GetOrder" => raw
            .orders
            .get_order(bearer(GetOrderRequest { order_id }, token))
            .await
            .map(drop),
        "ListOrders" => raw
            .orders
            .list_orders(bearer(
                ListOrdersRequest {
                    buyer_id: BUYER.to_owned(),
                    ..ListOrdersRequest::default()
                },
                token,
            ))
            .await
            .map(drop),
        "CancelOrder" => raw
            .orders
            .cancel_order(bearer(
                CancelOrderRequest {
                    // Not the matrix's own order, which is kept going.
                    order_id: "ord_0000000000000000000000000000dead".to_owned(),
                    buyer_id: BUYER.to_owned(),
                    reason: String::new(),
                },
                token,
            ))
            .await
            .map(drop),
        "WatchOrder" => raw
            .orders
            .watch_order(bearer(WatchOrderRequest { order_id }, token))
            .await
            .map(drop),
        "GetPayment" => raw
            .payments
            .get_payment(bearer(GetPaymentRequest { order_id }, token))
            .await
            .map(drop),
        "ListPayments" => raw
            .payments
            .list_payments(bearer(ListPaymentsRequest::default(), token))
            .await
            .map(drop),
        "Refund" => raw
            .payments
            .refund(bearer(
                RefundRequest {
                    order_id,
                    amount_fen: 1,
                    reason: "access check".to_owned(),
                    idempotency_key: "access-refund".to_owned(),
                },
                token,
            ))
            .await
            .map(drop),
        "ListPayouts" => raw
            .payments
            .list_payouts(bearer(ListPayoutsRequest::default(), token))
            .await
            .map(drop),
        "payments ListAuditRecords" => raw
            .payments
            .list_audit_records(bearer(ListAuditRecordsRequest::default(), token))
            .await
            .map(drop),
        "RegisterCourier" => raw
            .delivery
            .register_courier(bearer(courier_registration(), token))
            .await
            .map(drop),
        "UpdateCourierStatus" => raw
            .delivery
            .update_courier_status(bearer(
                UpdateCourierStatusRequest {
                    courier_id: COURIER.to_owned(),
                    location: None,
                    available: true,
                },
                token,
            ))
            .await
            .map(drop),
        "StreamAssignments" => raw
            .delivery
            .stream_assignments(bearer(
                StreamAssignmentsRequest {
                    courier_id: String::new(),
                },
                token,
            ))
            .await
            .map(drop),
        "ConfirmPickup" => raw
            .delivery
            .confirm_pickup(bearer(
                ConfirmPickupRequest {
                    courier_id: String::new(),
                    shipment_id,
                },
                token,
            ))
            .await
            .map(drop),
        "ConfirmDelivery" => raw
            .delivery
            .confirm_delivery(bearer(
                ConfirmDeliveryRequest {
                    courier_id: String::new(),
                    // No such shipment: the matrix's own is kept assigned.
                    shipment_id: "shp_0000000000000000000000000000dead".to_owned(),
                    recipient_name: "Chen Jing".to_owned(),
                    ..ConfirmDeliveryRequest::default()
                },
                token,
            ))
            .await
            .map(drop),
        "ReportFailure" => raw
            .delivery
            .report_failure(bearer(
                ReportFailureRequest {
                    courier_id: String::new(),
                    shipment_id: "shp_0000000000000000000000000000dead".to_owned(),
                    reason: "access check".to_owned(),
                },
                token,
            ))
            .await
            .map(drop),
        "GetShipment" => raw
            .delivery
            .get_shipment(bearer(GetShipmentRequest { shipment_id }, token))
            .await
            .map(drop),
        "ListCouriers" => raw
            .delivery
            .list_couriers(bearer(ListCouriersRequest::default(), token))
            .await
            .map(drop),
        "delivery ListAuditRecords" => raw
            .delivery
            .list_audit_records(bearer(ListAuditRecordsRequest::default(), token))
            .await
            .map(drop),
        other => panic!("no call for {other}"),
    }
}

fn courier_registration() -> RegisterCourierRequest {
    RegisterCourierRequest {
        courier_id: COURIER.to_owned(),
        name: "Wang Fang".to_owned(),
        home_county: ANJI.county.to_owned(),
        home_province: ANJI.province.to_owned(),
        region: ANJI.region.to_owned(),
        vehicle: Vehicle::Van.into(),
        cold_chain: true,
        capacity: 5,
        location: Some(GeoPoint {
            latitude: ANJI.latitude + 0.01,
            longitude: ANJI.longitude + 0.01,
        }),
    }
}

/// The records the matrix acts on, made through the APIs as their owners:
/// a seller's product with stock, a partner's courier next to it, a buyer's
/// order whose shipment that courier is given.
async fn own_records(system: &System, raw: &mut Raw, issuer: &Issuer) -> Own {
    let product = system.product("Anji white tea, 250 g", &ANJI, 50).await;
    let partner = issuer.token(Role::Partner, PARTNER);
    raw.delivery
        .register_courier(bearer(courier_registration(), Some(&partner)))
        .await
        .expect("the partner registers its courier");
    let buyer = issuer.token(Role::Buyer, BUYER);
    let request = system.order_request("access-matrix", BUYER, &[(&product, 1)], "approve");
    let order = raw
        .orders
        .place_order(bearer(request.clone(), Some(&buyer)))
        .await
        .expect("the buyer places an order")
        .into_inner();
    let shipment = system
        .wait_shipment(&order.order_id, &product, ShipmentState::Assigned)
        .await;
    assert_eq!(shipment.courier_id, COURIER);
    Own {
        order: request,
        product_id: product.product_id,
        order_id: order.order_id,
        shipment_id: shipment.shipment_id,
    }
}

/// Every method × every role: allowed through (whatever the method then
/// answers), `PERMISSION_DENIED` naming the roles it is for, and
/// `UNAUTHENTICATED` without a token or with one of another issuer.
#[tokio::test]
async fn every_method_answers_each_role_by_its_rule() {
    let system = System::start().await;
    let issuer = system.stack.issuer().expect("authentication is on").clone();
    let mut raw = Raw::connect(&system).await;
    let own = own_records(&system, &mut raw, &issuer).await;
    let stranger_dir = std::env::temp_dir().join(harvest_testkit::unique_name());
    let stranger = Issuer::in_dir(&stranger_dir, LOCAL_ISSUER).expect("another key");

    let mut wrong = Vec::new();
    for (method, allowed) in MATRIX {
        let no_token = call(&mut raw, &own, method, None).await;
        if no_token.as_ref().map_err(Status::code) != Err(Code::Unauthenticated) {
            wrong.push(format!("{method} without a token: {no_token:?}"));
        }
        let forged = stranger.token(Role::Operator, OPERATOR);
        let forged = call(&mut raw, &own, method, Some(&forged)).await;
        if forged.as_ref().map_err(Status::code) != Err(Code::Unauthenticated) {
            wrong.push(format!("{method} with another issuer's token: {forged:?}"));
        }
        for role in Role::ALL {
            let token = issuer.token(role, subject(role));
            let answer = call(&mut raw, &own, method, Some(&token)).await;
            let code = answer.as_ref().err().map(Status::code);
            let ok = if allowed.contains(&role) {
                !matches!(code, Some(Code::Unauthenticated | Code::PermissionDenied))
            } else {
                code == Some(Code::PermissionDenied)
                    && answer
                        .as_ref()
                        .is_err_and(|status| status.message().contains(" is for "))
            };
            if !ok {
                wrong.push(format!(
                    "{method} as {} (allowed: {}): {answer:?}",
                    role.as_str(),
                    allowed.contains(&role)
                ));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&stranger_dir);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A caller of an allowed role still touches only its own: another seller's
/// product, another buyer's order and payment, another courier's shipment
/// and assignments, another partner's courier are all `PERMISSION_DENIED`,
/// and nothing changes.
#[tokio::test]
async fn each_role_reaches_only_its_own_records() {
    let system = System::start().await;
    let issuer = system.stack.issuer().expect("authentication is on").clone();
    let mut raw = Raw::connect(&system).await;
    let own = own_records(&system, &mut raw, &issuer).await;
    let denied = |answer: Result<(), Status>, what: &str| {
        assert_eq!(
            answer.as_ref().map_err(Status::code),
            Err(Code::PermissionDenied),
            "{what}: {answer:?}"
        );
    };

    let other_seller = issuer.token(Role::Seller, "coop-fuping");
    for method in [
        "UpdatePrice",
        "UpdatePurchaseLimit",
        "ReceiveStockLot",
        "GetStock",
    ] {
        let answer = call(&mut raw, &own, method, Some(&other_seller)).await;
        denied(answer, &format!("{method} by another seller"));
    }
    let product = raw
        .catalog
        .get_product(bearer(
            GetProductRequest {
                product_id: own.product_id.clone(),
            },
            Some(&other_seller),
        ))
        .await
        .expect("anyone reads a product")
        .into_inner();
    assert_eq!(product.price_fen, 5_000, "the price is the seller's own");
    let posing = raw
        .catalog
        .create_product(bearer(
            CreateProductRequest {
                seller: Some(Seller {
                    seller_id: SELLER.to_owned(),
                    ..Seller::default()
                }),
                ..CreateProductRequest::default()
            },
            Some(&other_seller),
        ))
        .await
        .map(drop);
    denied(posing, "CreateProduct in another seller's name");

    let other_buyer = issuer.token(Role::Buyer, "buyer-hangzhou-9");
    for method in ["GetOrder", "ListOrders", "WatchOrder", "GetPayment"] {
        let answer = call(&mut raw, &own, method, Some(&other_buyer)).await;
        denied(answer, &format!("{method} by another buyer"));
    }
    let cancel = raw
        .orders
        .cancel_order(bearer(
            CancelOrderRequest {
                order_id: own.order_id.clone(),
                buyer_id: BUYER.to_owned(),
                reason: String::new(),
            },
            Some(&other_buyer),
        ))
        .await
        .map(drop);
    denied(cancel, "CancelOrder of another buyer's order");

    let other_courier = issuer.token(Role::Courier, "courier-access-2");
    let far_away = RegisterCourierRequest {
        courier_id: "courier-access-2".to_owned(),
        home_county: FUPING.county.to_owned(),
        home_province: FUPING.province.to_owned(),
        region: FUPING.region.to_owned(),
        location: Some(FUPING.location()),
        ..courier_registration()
    };
    raw.delivery
        .register_courier(bearer(
            far_away,
            Some(&issuer.token(Role::Partner, PARTNER)),
        ))
        .await
        .expect("another courier of the partner");
    for method in ["GetShipment", "ConfirmPickup"] {
        let answer = call(&mut raw, &own, method, Some(&other_courier)).await;
        denied(answer, &format!("{method} by another courier"));
    }
    let posing = raw
        .delivery
        .stream_assignments(bearer(
            StreamAssignmentsRequest {
                courier_id: COURIER.to_owned(),
            },
            Some(&other_courier),
        ))
        .await
        .map(drop);
    denied(posing, "StreamAssignments of another courier");

    let other_partner = issuer.token(Role::Partner, "partner-rival");
    for method in ["RegisterCourier", "UpdateCourierStatus"] {
        let answer = call(&mut raw, &own, method, Some(&other_partner)).await;
        denied(answer, &format!("{method} by another partner"));
    }

    // Nothing was changed by the refused calls: the shipment is still the
    // courier's, assigned, and the order still the buyer's, going on.
    let shipment = raw
        .delivery
        .get_shipment(bearer(
            GetShipmentRequest {
                shipment_id: own.shipment_id.clone(),
            },
            Some(&issuer.token(Role::Courier, COURIER)),
        ))
        .await
        .expect("its courier reads it")
        .into_inner();
    assert_eq!(
        (shipment.courier_id.as_str(), shipment.state()),
        (COURIER, ShipmentState::Assigned)
    );
    let courier_order = system.order(&own.order_id).await;
    assert_ne!(
        courier_order.state(),
        harvest_proto::common::v1::OrderState::Cancelled
    );
}
