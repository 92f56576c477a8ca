//! `harvest audit …`: a service's audit log, as an operator.

use std::future::Future;

use harvest_proto::common::v1::{AuditRecord, ListAuditRecordsRequest, ListAuditRecordsResponse};

use crate::args;
use crate::connect::{Context, Paging, collect_pages};
use crate::error::{CliError, RpcResultExt, Service};
use crate::output::audit as view;

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// List a service's audit records, newest first: when, what, on what,
    /// who, and why.
    List(ListArgs),
}

/// The services that keep an audit log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AuditedService {
    /// Price changes and stock lots received.
    Catalog,
    /// Refunds.
    Payments,
    /// Deliveries an operator confirmed without the buyer's code.
    Delivery,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// The service whose log to list.
    #[arg(long, value_enum)]
    service: AuditedService,
    /// Only the records of this product, order or shipment.
    #[arg(long, value_name = "ID", value_parser = args::id)]
    subject: Option<String>,
    #[command(flatten)]
    paging: Paging,
}

pub async fn run(context: &Context, command: AuditCommand) -> Result<(), CliError> {
    match command {
        AuditCommand::List(request) => list(context, request).await,
    }
}

async fn list(context: &Context, request: ListArgs) -> Result<(), CliError> {
    let subject = request.subject.unwrap_or_default();
    let paging = request.paging;
    let records = match request.service {
        AuditedService::Catalog => {
            let client = context.catalog().await?;
            pages(context, paging, &subject, Service::Catalog, |request| {
                let mut client = client.clone();
                async move { client.list_audit_records(request).await }
            })
            .await?
        }
        AuditedService::Payments => {
            let client = context.payments().await?;
            pages(context, paging, &subject, Service::Payments, |request| {
                let mut client = client.clone();
                async move { client.list_audit_records(request).await }
            })
            .await?
        }
        AuditedService::Delivery => {
            let client = context.delivery().await?;
            pages(context, paging, &subject, Service::Delivery, |request| {
                let mut client = client.clone();
                async move { client.list_audit_records(request).await }
            })
            .await?
        }
    };
    context
        .printer
        .show(&records[..], view::records_human, view::records_json)?;
    Ok(())
}

/// The records of `subject` (every one when empty), page after page, each
/// page asked for with `call`.
async fn pages<F, Fut>(
    context: &Context,
    paging: Paging,
    subject: &str,
    service: Service,
    call: F,
) -> Result<Vec<AuditRecord>, CliError>
where
    F: Fn(tonic::Request<ListAuditRecordsRequest>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<ListAuditRecordsResponse>, tonic::Status>>,
{
    collect_pages(paging, |page_token, page_size| {
        let request = context.unary(ListAuditRecordsRequest {
            subject: subject.to_owned(),
            page_size,
            page_token,
        });
        let answer = call(request);
        async move {
            let page = answer.await.answered_by(service)?;
            Ok((page.records, page.next_page_token))
        }
    })
    .await
}
