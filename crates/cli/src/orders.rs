//! `harvest order …`: placing, reading, following and cancelling orders.

use harvest_kit::auth::Role;
use harvest_proto::common::v1::{Address, OrderLine, OrderState};
use harvest_proto::orders::v1::{
    CancelOrderRequest, GetOrderRequest, ListOrdersRequest, PlaceOrderRequest, WatchOrderRequest,
};

use crate::Outcome;
use crate::args::{self, Line};
use crate::connect::{Context, Paging, collect_pages};
use crate::enums::enum_parser;
use crate::error::{CliError, RpcResultExt, Service};
use crate::output::orders as view;

#[derive(Debug, clap::Subcommand)]
pub enum OrderCommand {
    /// Place an order; prints its id and the idempotency key to retry with.
    ///
    /// Without --key a new key is made up and printed: if the call fails or
    /// its answer is lost, run the same command again with --key KEY and the
    /// orders service returns the order the first call placed, never a second
    /// one.
    Place(PlaceArgs),
    /// Show an order: state, priced lines, total, cancel reason and history.
    Show(OrderId),
    /// List a buyer's orders, newest first.
    List(ListArgs),
    /// Print an order's state, then each transition as it happens, until it
    /// is delivered (exit 0) or cancelled (exit 3).
    Watch(WatchArgs),
    /// Cancel an order on its buyer's behalf; allowed until pickup.
    Cancel(CancelArgs),
    /// Print an order's delivery code, as its buyer sees it: the buyer gives
    /// it to each courier at the door (`shipment deliver --code`).
    Code(CodeArgs),
}

#[derive(Debug, clap::Args)]
pub struct CodeArgs {
    /// The order's id.
    #[arg(value_parser = args::id)]
    order_id: String,
    /// The order's buyer, who alone sees the code.
    #[arg(long, value_name = "BUYER_ID", value_parser = args::id)]
    buyer: String,
}

#[derive(Debug, clap::Args)]
pub struct OrderId {
    /// The order's id, as `order place` printed it.
    #[arg(value_parser = args::id)]
    order_id: String,
}

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// The order's id, as `order place` printed it.
    #[arg(value_parser = args::id)]
    order_id: String,
    /// Stop (exit 0) once the order has reached this state, e.g. dispatching,
    /// instead of waiting for the end.
    #[arg(long, value_name = "STATE", value_parser = enum_parser::<OrderState>())]
    until: Option<OrderState>,
}

#[derive(Debug, clap::Args)]
pub struct PlaceArgs {
    /// The buyer placing the order.
    #[arg(long, value_name = "BUYER_ID", value_parser = args::id)]
    buyer: String,
    /// The buyer's region, e.g. east; its event streams carry the order.
    #[arg(long)]
    region: String,
    /// A product and how many units of it, e.g. --line prd_0190f1c2=3;
    /// repeat for more lines.
    #[arg(long = "line", value_name = "PRODUCT=QTY", required = true, value_parser = args::line)]
    lines: Vec<Line>,
    /// Who receives the goods.
    #[arg(long, value_name = "NAME")]
    recipient: String,
    /// The recipient's phone number.
    #[arg(long)]
    phone: String,
    /// The province of the delivery address.
    #[arg(long)]
    province: String,
    /// The county of the delivery address.
    #[arg(long)]
    county: String,
    /// Street address, village or building.
    #[arg(long)]
    street: String,
    /// The storefront's payment token; the sandbox provider approves
    /// `approve` and declines `decline`.
    #[arg(long, value_name = "TOKEN", default_value = "approve")]
    payment: String,
    /// The idempotency key of an earlier attempt to retry; a new one is made
    /// up when left out.
    #[arg(long, value_parser = args::key)]
    key: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// The buyer whose orders to list.
    #[arg(long, value_name = "BUYER_ID", value_parser = args::id)]
    buyer: String,
    #[command(flatten)]
    paging: Paging,
}

#[derive(Debug, clap::Args)]
pub struct CancelArgs {
    /// The order's id.
    #[arg(value_parser = args::id)]
    order_id: String,
    /// The order's buyer: only they may cancel it.
    #[arg(long, value_name = "BUYER_ID", value_parser = args::id)]
    buyer: String,
    /// Why, in the buyer's words.
    #[arg(long)]
    reason: Option<String>,
}

pub async fn run(context: &Context, command: OrderCommand) -> Result<Outcome, CliError> {
    let order = match command {
        OrderCommand::Place(request) => return place(context, request).await,
        OrderCommand::List(request) => return list(context, request).await,
        OrderCommand::Watch(request) => return watch(context, request).await,
        OrderCommand::Code(request) => return code(context, request).await,
        OrderCommand::Show(OrderId { order_id }) => {
            context
                .orders()
                .await?
                .get_order(context.unary(GetOrderRequest { order_id }))
                .await
        }
        OrderCommand::Cancel(request) => {
            context
                .orders()
                .await?
                .cancel_order(context.unary_as(
                    Role::Buyer,
                    &request.buyer.clone(),
                    CancelOrderRequest {
                        order_id: request.order_id,
                        buyer_id: request.buyer,
                        reason: request.reason.unwrap_or_default(),
                    },
                ))
                .await
        }
    }
    .answered_by(Service::Orders)?;
    context
        .printer
        .show(&order, view::order_human, view::order_json)?;
    Ok(Outcome::Done)
}

/// The request `order place` sends.
fn place_request(request: PlaceArgs, key: String) -> PlaceOrderRequest {
    PlaceOrderRequest {
        idempotency_key: key,
        buyer_id: request.buyer,
        region: request.region,
        ship_to: Some(Address {
            recipient: request.recipient,
            phone: request.phone,
            province: request.province,
            county: request.county,
            street: request.street,
            location: None,
        }),
        lines: request
            .lines
            .into_iter()
            .map(|line| OrderLine {
                product_id: line.product_id,
                quantity: line.quantity,
            })
            .collect(),
        payment_method: request.payment,
    }
}

async fn place(context: &Context, request: PlaceArgs) -> Result<Outcome, CliError> {
    let key = request
        .key
        .clone()
        .unwrap_or_else(|| harvest_domain::new_id("key").to_string());
    let order = context
        .orders()
        .await?
        .place_order(context.unary_as(
            Role::Buyer,
            &request.buyer.clone(),
            place_request(request, key.clone()),
        ))
        .await
        .answered_by(Service::Orders)
        .inspect_err(|error| {
            if error.may_have_taken_effect() {
                eprintln!("the order may have been placed: retry with --key {key} to find out");
            }
        })?;
    if context.printer.quiet {
        // Only the id goes to stdout; the key is still worth keeping.
        eprintln!("idempotency key: {key}");
    }
    context
        .printer
        .show(&(order, key), view::placed_human, view::placed_json)?;
    Ok(Outcome::Done)
}

async fn list(context: &Context, request: ListArgs) -> Result<Outcome, CliError> {
    let client = context.orders().await?;
    let orders = collect_pages(request.paging, |page_token, page_size| {
        let mut client = client.clone();
        let request = context.unary(ListOrdersRequest {
            buyer_id: request.buyer.clone(),
            page_size,
            page_token,
        });
        async move {
            let page = client
                .list_orders(request)
                .await
                .answered_by(Service::Orders)?;
            Ok((page.orders, page.next_page_token))
        }
    })
    .await?;
    context
        .printer
        .show(&orders[..], view::orders_human, view::orders_json)?;
    Ok(Outcome::Done)
}

/// Position along the saga's path, for `--until`.
fn progress(state: OrderState) -> u8 {
    match state {
        OrderState::Unspecified => 0,
        OrderState::Placed => 1,
        OrderState::Reserved => 2,
        OrderState::Confirmed => 3,
        OrderState::Dispatching => 4,
        OrderState::InTransit => 5,
        OrderState::Delivered => 6,
        OrderState::Cancelled => 7,
    }
}

/// How a watch ends, from the state an update carries: at the end of the
/// order, or once it got as far as `until`.
fn watch_outcome(state: i32, until: Option<OrderState>) -> Option<Outcome> {
    let state = OrderState::try_from(state).ok()?;
    match state {
        OrderState::Cancelled => Some(Outcome::OrderCancelled),
        OrderState::Delivered => Some(Outcome::Done),
        _ if until.is_some_and(|until| progress(state) >= progress(until)) => Some(Outcome::Done),
        _ => None,
    }
}

async fn code(context: &Context, request: CodeArgs) -> Result<Outcome, CliError> {
    let order = context
        .orders()
        .await?
        .get_order(context.unary_as(
            Role::Buyer,
            &request.buyer,
            GetOrderRequest {
                order_id: request.order_id,
            },
        ))
        .await
        .answered_by(Service::Orders)?;
    if order.delivery_code.is_empty() {
        return Err(CliError::Refused(format!(
            "order {} shows no delivery code to the caller: is {} its buyer?",
            order.order_id, request.buyer
        )));
    }
    let text = if context.printer.json {
        serde_json::json!({"order_id": order.order_id, "delivery_code": order.delivery_code})
            .to_string()
    } else {
        order.delivery_code
    };
    context.printer.write(&text)?;
    Ok(Outcome::Done)
}

async fn watch(context: &Context, request: WatchArgs) -> Result<Outcome, CliError> {
    let WatchArgs { order_id, until } = request;
    let mut updates = context
        .orders()
        .await?
        .watch_order(WatchOrderRequest { order_id })
        .await
        .answered_by(Service::Orders)?;
    loop {
        let update = updates
            .message()
            .await
            .map_err(|status| CliError::Rpc {
                service: Service::Orders,
                status,
            })?
            .ok_or_else(|| CliError::StreamEnded {
                service: Service::Orders,
                what: "the order has not reached a terminal state".to_owned(),
            })?;
        context
            .printer
            .show(&update, view::update_human, view::update_json)?;
        let state = update.order.as_ref().map_or(0, |order| order.state);
        if let Some(outcome) = watch_outcome(state, until) {
            return Ok(outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_ends_at_terminal_states_or_once_far_enough() {
        assert_eq!(
            watch_outcome(OrderState::Delivered.into(), None),
            Some(Outcome::Done)
        );
        assert_eq!(
            watch_outcome(OrderState::Cancelled.into(), Some(OrderState::Reserved)),
            Some(Outcome::OrderCancelled)
        );
        for state in [
            OrderState::Placed,
            OrderState::Reserved,
            OrderState::Confirmed,
            OrderState::Dispatching,
            OrderState::InTransit,
        ] {
            assert_eq!(watch_outcome(state.into(), None), None, "{state:?}");
        }
        let until = Some(OrderState::Dispatching);
        assert_eq!(watch_outcome(OrderState::Confirmed.into(), until), None);
        assert_eq!(
            watch_outcome(OrderState::Dispatching.into(), until),
            Some(Outcome::Done)
        );
        assert_eq!(
            watch_outcome(OrderState::InTransit.into(), until),
            Some(Outcome::Done),
            "past it counts"
        );
    }

    #[test]
    fn place_request_carries_every_flag() {
        let request = PlaceArgs {
            buyer: "buyer-1".to_owned(),
            region: "east".to_owned(),
            lines: vec![Line {
                product_id: "prd_apples".to_owned(),
                quantity: 3,
            }],
            recipient: "Zhang Wei".to_owned(),
            phone: "+86 138 0000 0000".to_owned(),
            province: "Zhejiang".to_owned(),
            county: "Xihu".to_owned(),
            street: "1 Wensan Road".to_owned(),
            payment: "approve".to_owned(),
            key: None,
        };
        let sent = place_request(request, "key_1".to_owned());
        assert_eq!(sent.idempotency_key, "key_1");
        assert_eq!(sent.lines[0].quantity, 3);
        assert_eq!(sent.ship_to.map(|a| a.county), Some("Xihu".to_owned()));
        assert_eq!(sent.payment_method, "approve");
    }
}
