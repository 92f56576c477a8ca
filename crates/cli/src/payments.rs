//! `harvest payment …`: reading payments and refunding them.

use harvest_kit::auth::Role;
use harvest_proto::payments::v1::{
    GetPaymentRequest, ListPaymentsRequest, ListPayoutsRequest, PaymentState, RefundRequest,
};

use crate::args;
use crate::connect::{Context, Paging, collect_pages};
use crate::enums::enum_parser;
use crate::error::{CliError, RpcResultExt, Service};
use crate::output::payments as view;

#[derive(Debug, clap::Subcommand)]
pub enum PaymentCommand {
    /// Show an order's payment: state, amounts, ledger entries and payouts.
    Show(OrderId),
    /// List payments, optionally only those in one state.
    List(ListArgs),
    /// Refund all or part of an order's captured payment.
    ///
    /// Without --key a new key is made up and printed: run the same command
    /// again with --key KEY to retry without refunding twice.
    Refund(RefundArgs),
    /// List what a seller was paid out, order by order.
    Payouts(PayoutsArgs),
}

#[derive(Debug, clap::Args)]
pub struct PayoutsArgs {
    /// The seller whose payouts to list, for tokens of a local stack's
    /// issuer (acting as that seller); with --token, the token's subject is.
    #[arg(long, value_name = "SELLER_ID", value_parser = args::id)]
    seller: String,
    #[command(flatten)]
    paging: Paging,
}

#[derive(Debug, clap::Args)]
pub struct OrderId {
    /// The id of the order the payment is for.
    #[arg(value_parser = args::id)]
    order_id: String,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only payments in this state.
    #[arg(long, value_parser = enum_parser::<PaymentState>())]
    state: Option<PaymentState>,
    #[command(flatten)]
    paging: Paging,
}

#[derive(Debug, clap::Args)]
pub struct RefundArgs {
    /// The id of the order whose payment to refund.
    #[arg(value_parser = args::id)]
    order_id: String,
    /// How much to refund, in fen (¥1 = 100 fen); everything not yet
    /// refunded when left out.
    #[arg(long, value_name = "FEN", value_parser = args::amount)]
    amount: Option<i64>,
    /// Why, for the ledger.
    #[arg(long)]
    reason: String,
    /// The idempotency key of an earlier attempt to retry; a new one is made
    /// up when left out.
    #[arg(long, value_parser = args::key)]
    key: Option<String>,
}

pub async fn run(context: &Context, command: PaymentCommand) -> Result<(), CliError> {
    match command {
        PaymentCommand::Show(OrderId { order_id }) => show(context, order_id).await,
        PaymentCommand::List(request) => list(context, request).await,
        PaymentCommand::Refund(request) => refund(context, request).await,
        PaymentCommand::Payouts(request) => payouts(context, request).await,
    }
}

async fn payouts(context: &Context, request: PayoutsArgs) -> Result<(), CliError> {
    let client = context.payments().await?;
    let payouts = collect_pages(request.paging, |page_token, page_size| {
        let mut client = client.clone();
        let call = context.unary_as(
            Role::Seller,
            &request.seller,
            ListPayoutsRequest {
                seller_id: String::new(),
                page_size,
                page_token,
            },
        );
        async move {
            let page = client
                .list_payouts(call)
                .await
                .answered_by(Service::Payments)?;
            Ok((page.payouts, page.next_page_token))
        }
    })
    .await?;
    context
        .printer
        .show(&payouts[..], view::payouts_human, view::payouts_json)?;
    Ok(())
}

async fn show(context: &Context, order_id: String) -> Result<(), CliError> {
    let payment = context
        .payments()
        .await?
        .get_payment(context.unary(GetPaymentRequest { order_id }))
        .await
        .answered_by(Service::Payments)?;
    context
        .printer
        .show(&payment, view::payment_human, view::payment_json)?;
    Ok(())
}

async fn list(context: &Context, request: ListArgs) -> Result<(), CliError> {
    let client = context.payments().await?;
    let payments = collect_pages(request.paging, |page_token, page_size| {
        let mut client = client.clone();
        let request = context.unary(ListPaymentsRequest {
            state: request.state.map_or(0, Into::into),
            page_size,
            page_token,
        });
        async move {
            let page = client
                .list_payments(request)
                .await
                .answered_by(Service::Payments)?;
            Ok((page.payments, page.next_page_token))
        }
    })
    .await?;
    context
        .printer
        .show(&payments[..], view::payments_human, view::payments_json)?;
    Ok(())
}

async fn refund(context: &Context, request: RefundArgs) -> Result<(), CliError> {
    let key = request
        .key
        .unwrap_or_else(|| harvest_domain::new_id("rfd").to_string());
    let payment = context
        .payments()
        .await?
        .refund(context.unary(RefundRequest {
            order_id: request.order_id,
            amount_fen: request.amount.unwrap_or(0),
            reason: request.reason,
            idempotency_key: key.clone(),
        }))
        .await
        .answered_by(Service::Payments)
        .inspect_err(|error| {
            if error.may_have_taken_effect() {
                eprintln!("the refund may have been made: retry with --key {key} to find out");
            }
        })?;
    context
        .printer
        .show(&(payment, key), view::refunded_human, view::refunded_json)?;
    Ok(())
}
