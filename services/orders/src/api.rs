//! The orders service's gRPC API for storefronts.

use std::pin::Pin;
use std::time::{Duration, SystemTime};

use futures::Stream;
use harvest_bus::{Payload, new_envelope};
use harvest_domain::{Id, Regions, deterministic_id, new_id};
use harvest_kit::auth::{self, Identity, NotYours, Role, Rule, caller};
use harvest_proto::common::v1::OrderState as ProtoState;
use harvest_proto::events::v1::OrderPlaced;
use harvest_proto::orders::storage::v1::StoredOrder;
use harvest_proto::orders::v1::orders_service_server::OrdersService;
use harvest_proto::orders::v1::{
    CancelOrderRequest, GetOrderRequest, ListOrdersRequest, ListOrdersResponse, Order, OrderUpdate,
    PlaceOrderRequest, PricedLine, Transition, WatchOrderRequest,
};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::config::OrderRules;
use crate::decider::State;
use crate::error::OrderError;
use crate::model::{self, ValidOrder};
use crate::saga::{Applied, Input, PLACEMENT_POLL, Saga, SagaError};
use crate::store::Claim;
use crate::watch::WatchHub;

/// Who may call each method of the API, by role: one rule a method. A rule
/// does not say whose records the caller may touch (a buyer's own orders, a
/// seller's own products).
pub const RULES: &[Rule] = &[
    Rule {
        method: "/harvest.orders.v1.OrdersService/PlaceOrder",
        roles: &[Role::Buyer],
    },
    Rule {
        method: "/harvest.orders.v1.OrdersService/GetOrder",
        roles: &[Role::Buyer, Role::Operator],
    },
    Rule {
        method: "/harvest.orders.v1.OrdersService/ListOrders",
        roles: &[Role::Buyer, Role::Operator],
    },
    Rule {
        method: "/harvest.orders.v1.OrdersService/CancelOrder",
        roles: &[Role::Buyer],
    },
    Rule {
        method: "/harvest.orders.v1.OrdersService/WatchOrder",
        roles: &[Role::Buyer, Role::Operator],
    },
];

/// Counter: orders placed, by `region`.
pub const ORDERS_PLACED: &str = "harvest_orders_placed_total";

const DEFAULT_PAGE_SIZE: usize = 20;
const MAX_PAGE_SIZE: usize = 100;
/// A watcher re-reads its order this often even without a wake-up.
const WATCH_RESYNC: Duration = Duration::from_secs(5);

pub struct OrdersApi {
    saga: Saga,
    regions: Regions,
    rules: OrderRules,
    hub: WatchHub,
}

impl OrdersApi {
    pub fn new(saga: Saga, regions: Regions, rules: OrderRules, hub: WatchHub) -> Self {
        OrdersApi {
            saga,
            regions,
            rules,
            hub,
        }
    }

    /// Places an order, answering once its placed event is acknowledged. A
    /// call that cannot get there within `placement_wait` answers
    /// `UNAVAILABLE`; the order it stored is published once the broker is
    /// back, and a retry with the same key returns it.
    #[tracing::instrument(skip_all, fields(buyer_id = %request.buyer_id, region = %request.region, order_id))]
    async fn place(&self, request: PlaceOrderRequest) -> Result<Order, OrderError> {
        let valid = model::validate(&request, &self.regions, &self.rules)?;
        let candidate = new_id("ord");
        let deadline = tokio::time::Instant::now() + self.rules.placement_wait();
        let not_yet = |order_id: &str| {
            OrderError::Unavailable(format!(
                "order {order_id} is stored but the event broker has not acknowledged it yet; \
                 retry with the same idempotency_key to get it"
            ))
        };
        let mut claim = self.claim(&valid, &candidate).await?;
        loop {
            let placed_here = matches!(claim, Claim::New(_));
            match claim {
                Claim::Conflict(order_id) => {
                    return Err(OrderError::AlreadyExists(format!(
                        "idempotency_key {:?} was already used for a different request (order {order_id})",
                        valid.idempotency_key
                    )));
                }
                Claim::New(order_id)
                | Claim::Existing {
                    order_id,
                    take_over: true,
                } => {
                    tracing::Span::current().record("order_id", order_id.as_str());
                    let created = self.saga.create(new_record(&valid, &order_id)?);
                    let record = tokio::time::timeout_at(deadline, created)
                        .await
                        .map_err(|_| not_yet(order_id.as_str()))?
                        .map_err(|error| unacknowledged(error, order_id.as_str()))?;
                    if placed_here {
                        metrics::counter!(ORDERS_PLACED, "region" => valid.region.to_string())
                            .increment(1);
                        tracing::info!(order_id = %order_id, lines = valid.lines.len(), "order placed");
                    }
                    return Ok(record.order.unwrap_or_default());
                }
                Claim::Existing {
                    order_id,
                    take_over: false,
                } => {
                    // Another call placed it (or is placing it): answer once
                    // its event is acknowledged, publishing it here if that
                    // call has given up.
                    if let Some(stored) = self.saga.store().load(&order_id).await? {
                        if !awaiting_placement(&stored.record) {
                            return Ok(stored.record.order.unwrap_or_default());
                        }
                        if stored_for(&stored.record) > PLACEMENT_POLL * 5 {
                            tokio::time::timeout_at(deadline, self.saga.flush(&order_id))
                                .await
                                .map_err(|_| not_yet(&order_id))?
                                .map_err(|error| unacknowledged(error, &order_id))?;
                            claim = self.claim(&valid, &candidate).await?;
                            continue;
                        }
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return Err(not_yet(&order_id));
                    }
                    tokio::time::sleep(PLACEMENT_POLL).await;
                    claim = self.claim(&valid, &candidate).await?;
                }
            }
        }
    }

    async fn claim(&self, valid: &ValidOrder, candidate: &Id) -> Result<Claim, OrderError> {
        Ok(self
            .saga
            .store()
            .claim_placement(
                valid.buyer_id.as_str(),
                &valid.idempotency_key,
                candidate.as_str(),
                &valid.canonical_bytes(),
                self.rules.placement_lease(),
                self.rules.idempotency_ttl(),
            )
            .await?)
    }

    async fn order(&self, order_id: &str) -> Result<Order, OrderError> {
        let id = model::parse_id("order_id", order_id)?;
        self.saga
            .store()
            .load(id.as_str())
            .await?
            .and_then(|stored| stored.record.order)
            .ok_or_else(|| OrderError::NotFound(format!("order {id} does not exist")))
    }

    async fn list(&self, request: ListOrdersRequest) -> Result<ListOrdersResponse, OrderError> {
        let buyer = model::parse_id("buyer_id", &request.buyer_id)?;
        let page_size =
            harvest_domain::page_size(request.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
                .map_err(|reason| OrderError::invalid("page_size", reason))?;
        let after = match request.page_token.as_str() {
            "" => None,
            token => Some(decode_page_token(token)?),
        };
        let (ids, more) = self
            .saga
            .store()
            .buyer_orders(buyer.as_str(), after, page_size)
            .await?;
        let mut orders = Vec::with_capacity(ids.len());
        for (order_id, _) in &ids {
            if let Some(stored) = self.saga.store().load(order_id).await?
                && let Some(order) = stored.record.order
            {
                orders.push(order);
            }
        }
        let next_page_token = match ids.last() {
            Some((order_id, created_ms)) if more => encode_page_token(*created_ms, order_id),
            _ => String::new(),
        };
        Ok(ListOrdersResponse {
            orders,
            next_page_token,
        })
    }

    #[tracing::instrument(skip_all, fields(order_id = %request.order_id))]
    async fn cancel(&self, request: CancelOrderRequest) -> Result<Order, OrderError> {
        let order = self.order(&request.order_id).await?;
        let buyer = model::parse_id("buyer_id", &request.buyer_id)?;
        if order.buyer_id != buyer.as_str() {
            return Err(OrderError::PermissionDenied(format!(
                "order {} belongs to another buyer",
                order.order_id
            )));
        }
        if request.reason.chars().count() > 200 {
            return Err(OrderError::invalid(
                "reason",
                "must be at most 200 characters",
            ));
        }
        let input = Input::BuyerCancel {
            reason: request.reason.trim().to_owned(),
        };
        match self.saga.apply(&order.order_id, &input).await? {
            Applied::Accepted(order) | Applied::Duplicate(order) | Applied::Parked(order) => {
                Ok(order)
            }
            Applied::Refused(order, _) if order.state() == ProtoState::Cancelled => Ok(order),
            Applied::Refused(order, refused) => Err(OrderError::FailedPrecondition(format!(
                "order {} is {}: it can be cancelled only until its goods are picked up",
                order.order_id, refused.state
            ))),
            Applied::UnknownOrder | Applied::Ignored => Err(OrderError::NotFound(format!(
                "order {} does not exist",
                order.order_id
            ))),
        }
    }

    async fn watch(
        &self,
        order_id: &str,
    ) -> Result<ReceiverStream<Result<OrderUpdate, Status>>, OrderError> {
        let id = model::parse_id("order_id", order_id)?;
        // Subscribe before the first read, so no change falls in between.
        let mut wakeups = self.hub.subscribe(id.as_str());
        let first = self.order(id.as_str()).await?;
        let (sender, receiver) = mpsc::channel(16);
        let store = self.saga.store().clone();
        tokio::spawn(async move {
            let mut sent = first.history.len();
            let mut done = State::from_proto(first.state()).is_none_or(State::is_terminal);
            if sender
                .send(Ok(OrderUpdate {
                    order: Some(first),
                    transition: None,
                }))
                .await
                .is_err()
            {
                return;
            }
            while !done {
                tokio::select! {
                    () = sender.closed() => return,
                    () = wakeups.rung() => {}
                    () = tokio::time::sleep(WATCH_RESYNC) => {}
                }
                let order = match store.load(id.as_str()).await {
                    Ok(Some(stored)) => stored.record.order.unwrap_or_default(),
                    Ok(None) => return,
                    Err(error) => {
                        tracing::warn!(order_id = %id, error.cause_chain = ?error, "watch could not read the order");
                        continue;
                    }
                };
                let unsent = sent..order.history.len();
                sent = order.history.len();
                done = State::from_proto(order.state()).is_none_or(State::is_terminal);
                // Transitions may come several to a read (one write can make
                // two, microseconds apart): each goes with the order as it
                // stood right after it, not with the latest.
                for index in unsent {
                    let Some(snapshot) = crate::watch::as_of(&order, index) else {
                        continue;
                    };
                    let update = OrderUpdate {
                        transition: snapshot.history.last().cloned(),
                        order: Some(snapshot),
                    };
                    if sender.send(Ok(update)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(ReceiverStream::new(receiver))
    }
}

/// Whether the order-placed event is still waiting for the broker.
/// A failed publish of a placed order is the broker's: `UNAVAILABLE`, to be
/// retried with the same key.
fn unacknowledged(error: SagaError, order_id: &str) -> OrderError {
    match error {
        SagaError::Publish(_) => OrderError::Unavailable(format!(
            "order {order_id} is stored but the event broker did not acknowledge it; \
             retry with the same idempotency_key to get it"
        )),
        other => other.into(),
    }
}

/// How long ago the order was stored.
fn stored_for(record: &StoredOrder) -> Duration {
    let created = record
        .order
        .as_ref()
        .and_then(|order| order.created_at)
        .and_then(|at| {
            SystemTime::UNIX_EPOCH.checked_add(Duration::new(
                at.seconds.max(0) as u64,
                at.nanos.max(0) as u32,
            ))
        });
    created
        .and_then(|at| harvest_kit::clock::now().duration_since(at).ok())
        .unwrap_or_default()
}

fn awaiting_placement(record: &StoredOrder) -> bool {
    record
        .outbox
        .iter()
        .any(|envelope| matches!(envelope.payload, Some(Payload::OrderPlaced(_))))
}

/// A new order in state PLACED, with its order-placed event in the outbox.
fn new_record(valid: &ValidOrder, order_id: &str) -> Result<StoredOrder, OrderError> {
    let id = Id::parse(order_id).map_err(|e| OrderError::invalid("order_id", e))?;
    let now = harvest_kit::clock::now();
    let placed = new_envelope(
        &deterministic_id("evt", &[id.as_str(), "orders", "placed"]),
        &id,
        &valid.region,
        "orders",
        Payload::OrderPlaced(OrderPlaced {
            buyer_id: valid.buyer_id.to_string(),
            lines: valid.lines.clone(),
            ship_to: Some(valid.ship_to.clone()),
            payment_method: valid.payment_method.clone(),
            placed_at: Some(now.into()),
        }),
    );
    let order = Order {
        order_id: id.to_string(),
        buyer_id: valid.buyer_id.to_string(),
        region: valid.region.to_string(),
        state: ProtoState::Placed.into(),
        lines: valid
            .lines
            .iter()
            .map(|line| PricedLine {
                product_id: line.product_id.clone(),
                quantity: line.quantity,
                ..PricedLine::default()
            })
            .collect(),
        total_fen: 0,
        ship_to: Some(valid.ship_to.clone()),
        created_at: Some(now.into()),
        updated_at: Some(now.into()),
        cancel_reason: 0,
        cancel_detail: String::new(),
        history: vec![Transition {
            from: ProtoState::Unspecified.into(),
            to: ProtoState::Placed.into(),
            at: Some(now.into()),
            cause: "harvest.orders.v1.OrdersService/PlaceOrder".to_owned(),
            event_id: placed.event_id.clone(),
            detail: String::new(),
        }],
        failed_shipments: Vec::new(),
        charged_fen: 0,
        delivery_code: harvest_domain::delivery_code::new_code(),
    };
    Ok(StoredOrder {
        order: Some(order),
        placed_lines: valid.lines.clone(),
        payment_method: valid.payment_method.clone(),
        outbox: vec![placed],
        traceparent: harvest_bus::trace::current_traceparent().unwrap_or_default(),
        ..StoredOrder::default()
    })
}

fn encode_page_token(created_ms: i64, order_id: &str) -> String {
    harvest_domain::encode_page_token(&format!("{created_ms}:{order_id}"))
}

fn decode_page_token(token: &str) -> Result<(i64, String), OrderError> {
    let invalid = || OrderError::invalid("page_token", harvest_domain::NOT_A_PAGE_TOKEN);
    let cursor = harvest_domain::decode_page_token(token).ok_or_else(invalid)?;
    let (ms, order_id) = cursor.split_once(':').ok_or_else(invalid)?;
    let ms = ms.parse().map_err(|_| invalid())?;
    Id::parse(order_id).map_err(|_| invalid())?;
    Ok((ms, order_id.to_owned()))
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<OrderUpdate, Status>> + Send>>;

/// A buyer acts as themself: `buyer_id` must be theirs, and is when left
/// empty. Operators (and every caller while authentication is off) name any
/// buyer.
fn own_buyer_id(caller: Option<&Identity>, buyer_id: &mut String) -> Result<(), NotYours> {
    auth::act_as(caller, Role::Buyer, "buyer_id", buyer_id)
}

/// Whether `caller` may see an order's delivery code: its buyer only
/// ([`may_see`] keeps other buyers out), and anyone while authentication
/// is off.
fn sees_code(caller: Option<&Identity>) -> bool {
    caller.is_none_or(|caller| caller.role == Role::Buyer)
}

/// `order` as `caller` may see it.
fn shown_to(caller: Option<&Identity>, mut order: Order) -> Order {
    if !sees_code(caller) {
        order.delivery_code.clear();
    }
    order
}

/// A buyer sees only their own orders.
fn may_see(caller: Option<&Identity>, order: &Order) -> Result<(), NotYours> {
    auth::owned_by(
        caller,
        Role::Buyer,
        &order.buyer_id,
        format_args!("order {}", order.order_id),
    )
}

#[tonic::async_trait]
impl OrdersService for OrdersApi {
    async fn place_order(
        &self,
        request: Request<PlaceOrderRequest>,
    ) -> Result<Response<Order>, Status> {
        let caller = caller(&request);
        let mut request = request.into_inner();
        own_buyer_id(caller.as_ref(), &mut request.buyer_id)?;
        Ok(Response::new(self.place(request).await?))
    }

    async fn get_order(
        &self,
        request: Request<GetOrderRequest>,
    ) -> Result<Response<Order>, Status> {
        let caller = caller(&request);
        let order = self.order(&request.into_inner().order_id).await?;
        may_see(caller.as_ref(), &order)?;
        Ok(Response::new(shown_to(caller.as_ref(), order)))
    }

    async fn list_orders(
        &self,
        request: Request<ListOrdersRequest>,
    ) -> Result<Response<ListOrdersResponse>, Status> {
        let caller = caller(&request);
        let mut request = request.into_inner();
        own_buyer_id(caller.as_ref(), &mut request.buyer_id)?;
        let mut listed = self.list(request).await?;
        listed.orders = listed
            .orders
            .into_iter()
            .map(|order| shown_to(caller.as_ref(), order))
            .collect();
        Ok(Response::new(listed))
    }

    async fn cancel_order(
        &self,
        request: Request<CancelOrderRequest>,
    ) -> Result<Response<Order>, Status> {
        let caller = caller(&request);
        let mut request = request.into_inner();
        own_buyer_id(caller.as_ref(), &mut request.buyer_id)?;
        Ok(Response::new(self.cancel(request).await?))
    }

    type WatchOrderStream = WatchStream;

    async fn watch_order(
        &self,
        request: Request<WatchOrderRequest>,
    ) -> Result<Response<Self::WatchOrderStream>, Status> {
        let caller = caller(&request);
        let order_id = request.into_inner().order_id;
        if caller
            .as_ref()
            .is_some_and(|caller| caller.role == Role::Buyer)
        {
            may_see(caller.as_ref(), &self.order(&order_id).await?)?;
        }
        let stream = self.watch(&order_id).await?;
        let show = sees_code(caller.as_ref());
        Ok(Response::new(Box::pin(stream.map(move |update| {
            update.map(|mut update| {
                if !show && let Some(order) = update.order.as_mut() {
                    order.delivery_code.clear();
                }
                update
            })
        }))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_reject_garbage() {
        let token = encode_page_token(1_795_000_000_123, "ord_abc");
        assert_eq!(
            decode_page_token(&token).ok(),
            Some((1_795_000_000_123, "ord_abc".to_owned()))
        );
        for bad in ["", "zz", "abc", &encode_page_token(5, "{x}")] {
            assert!(decode_page_token(bad).is_err(), "{bad:?}");
        }
    }
}

#[cfg(test)]
mod access_rules {
    #[test]
    fn every_method_has_one_rule() {
        harvest_kit::auth::check_rules("harvest.orders.v1.OrdersService", super::RULES)
            .expect("one rule a method");
    }
}
