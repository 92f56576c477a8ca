//! `harvest courier …` and `harvest shipment …`: what a courier system does
//! through the delivery service, by hand.

use harvest_kit::auth::Role;
use harvest_kit::issuer::act_as;
use std::time::Duration;

use harvest_proto::common::v1::GeoPoint;
use harvest_proto::delivery::v1::delivery_service_client::DeliveryServiceClient;
use harvest_proto::delivery::v1::{
    ConfirmDeliveryRequest, ConfirmPickupRequest, GetShipmentRequest, ListCouriersRequest,
    RegisterCourierRequest, ReportFailureRequest, StreamAssignmentsRequest,
    UpdateCourierStatusRequest, Vehicle,
};

use crate::args;
use crate::connect::{Context, Paging, Traced, collect_pages};
use crate::enums::enum_parser;
use crate::error::{CliError, RpcResultExt, Service};
use crate::output::delivery as view;

/// The delivery service sends a courier's open assignments at once when the
/// stream opens; a pause this long means it has sent them all.
const OPEN_ASSIGNMENTS_SETTLE: Duration = Duration::from_secs(1);

#[derive(Debug, clap::Subcommand)]
pub enum CourierCommand {
    /// Register a courier, or update one registered with the same --id.
    Register(RegisterArgs),
    /// Report a courier's location and whether they take new shipments.
    Status(StatusArgs),
    /// Print a courier's open assignments; with --follow, keep printing new
    /// ones as they are made.
    Assignments(AssignmentsArgs),
    /// List the couriers a courier partner registered.
    List(ListArgs),
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// The courier partner whose couriers to list, for tokens of a local
    /// stack's issuer; with --token, the token's subject is.
    #[arg(long, value_name = "PARTNER_ID", default_value = "partner-local", value_parser = args::id)]
    partner: String,
    #[command(flatten)]
    paging: Paging,
}

#[derive(Debug, clap::Subcommand)]
pub enum ShipmentCommand {
    /// Show a shipment: state, courier, pickup point and deadline, goods.
    Show(ShipmentId),
    /// Confirm, as its courier, that a shipment's goods were picked up.
    Pickup(CourierStep),
    /// Confirm, as its courier, that a shipment was delivered.
    Deliver(DeliverArgs),
    /// Report, as its courier, that a shipment could not be picked up or
    /// delivered.
    Fail(FailArgs),
}

#[derive(Debug, clap::Args)]
pub struct Location {
    /// Latitude in degrees (WGS-84).
    #[arg(long, value_name = "DEGREES", allow_negative_numbers = true, value_parser = args::latitude)]
    lat: f64,
    /// Longitude in degrees (WGS-84).
    #[arg(long, value_name = "DEGREES", allow_negative_numbers = true, value_parser = args::longitude)]
    lon: f64,
}

impl Location {
    fn point(&self) -> GeoPoint {
        GeoPoint {
            latitude: self.lat,
            longitude: self.lon,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct RegisterArgs {
    /// The courier's name.
    #[arg(long)]
    name: String,
    /// Home county, where the courier mostly picks up.
    #[arg(long)]
    county: String,
    /// Home province.
    #[arg(long)]
    province: String,
    /// The region the courier serves, e.g. east.
    #[arg(long)]
    region: String,
    /// What the courier drives.
    #[arg(long, default_value = "tricycle", value_parser = enum_parser::<Vehicle>())]
    vehicle: Vehicle,
    /// The vehicle keeps goods cold.
    #[arg(long)]
    cold_chain: bool,
    /// Shipments the courier can carry at once.
    #[arg(long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(i32).range(1..))]
    capacity: i32,
    #[command(flatten)]
    location: Location,
    /// Choose the courier's id; registering again with it updates the
    /// courier. The delivery service picks one when left out.
    #[arg(long, value_name = "COURIER_ID", value_parser = args::id)]
    id: Option<String>,
    /// The courier partner (company) registering the courier, for tokens
    /// of a local stack's issuer; with --token, the token's subject is.
    #[arg(long, value_name = "PARTNER_ID", default_value = "partner-local", value_parser = args::id)]
    partner: String,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The courier's id, as `courier register` printed it.
    #[arg(value_parser = args::id)]
    courier_id: String,
    #[command(flatten)]
    location: Location,
    #[command(flatten)]
    availability: Availability,
}

#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct Availability {
    /// The courier takes new shipments.
    #[arg(long)]
    available: bool,
    /// The courier takes no new shipments.
    #[arg(long)]
    unavailable: bool,
}

#[derive(Debug, clap::Args)]
pub struct AssignmentsArgs {
    /// The courier's id, as `courier register` printed it.
    #[arg(value_parser = args::id)]
    courier_id: String,
    /// Keep printing new assignments as they are made, until Ctrl-C.
    #[arg(long)]
    follow: bool,
}

#[derive(Debug, clap::Args)]
pub struct ShipmentId {
    /// The shipment's id, from the courier's assignments.
    #[arg(value_parser = args::id)]
    shipment_id: String,
}

/// The shipment a courier acts on, and the courier.
#[derive(Debug, clap::Args)]
pub struct CourierStep {
    /// The shipment's id, from the courier's assignments.
    #[arg(value_parser = args::id)]
    shipment_id: String,
    /// The courier assigned to the shipment.
    #[arg(long, value_name = "COURIER_ID", value_parser = args::id)]
    courier: String,
}

#[derive(Debug, clap::Args)]
pub struct DeliverArgs {
    #[command(flatten)]
    step: CourierStep,
    /// Who took the goods.
    #[arg(long, value_name = "NAME")]
    recipient: String,
    /// A reference to the proof of delivery (photo, signature).
    #[arg(long, value_name = "REF")]
    proof: Option<String>,
    /// The buyer's delivery code (`order code`), which the courier confirms
    /// the delivery with.
    #[arg(long, value_name = "CODE", required_unless_present = "override_reason")]
    code: Option<String>,
    /// Confirm as an operator, without the buyer's code, for this reason.
    #[arg(long = "override", value_name = "REASON", conflicts_with = "code")]
    override_reason: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct FailArgs {
    #[command(flatten)]
    step: CourierStep,
    /// What went wrong.
    #[arg(long)]
    reason: String,
}

pub async fn courier(context: &Context, command: CourierCommand) -> Result<(), CliError> {
    let mut client = context.delivery().await?;
    let courier = match command {
        CourierCommand::Register(request) => {
            let partner = request.partner.clone();
            client
                .register_courier(context.unary_as(
                    Role::Partner,
                    &partner,
                    register_request(request),
                ))
                .await
        }
        CourierCommand::Status(request) => {
            let courier = request.courier_id.clone();
            client
                .update_courier_status(context.unary_as(
                    Role::Courier,
                    &courier,
                    UpdateCourierStatusRequest {
                        courier_id: request.courier_id,
                        location: Some(request.location.point()),
                        available: request.availability.available,
                    },
                ))
                .await
        }
        CourierCommand::Assignments(request) => {
            return assignments(context, client, request).await;
        }
        CourierCommand::List(request) => return list(context, client, request).await,
    }
    .answered_by(Service::Delivery)?;
    context
        .printer
        .show(&courier, view::courier_human, view::courier_json)?;
    Ok(())
}

async fn list(
    context: &Context,
    client: DeliveryServiceClient<Traced>,
    request: ListArgs,
) -> Result<(), CliError> {
    let couriers = collect_pages(request.paging, |page_token, page_size| {
        let mut client = client.clone();
        let call = context.unary_as(
            Role::Partner,
            &request.partner,
            ListCouriersRequest {
                partner_id: String::new(),
                page_size,
                page_token,
            },
        );
        async move {
            let page = client
                .list_couriers(call)
                .await
                .answered_by(Service::Delivery)?;
            Ok((page.couriers, page.next_page_token))
        }
    })
    .await?;
    context
        .printer
        .show(&couriers[..], view::couriers_human, view::couriers_json)?;
    Ok(())
}

fn register_request(request: RegisterArgs) -> RegisterCourierRequest {
    RegisterCourierRequest {
        courier_id: request.id.unwrap_or_default(),
        name: request.name,
        home_county: request.county,
        home_province: request.province,
        region: request.region,
        vehicle: request.vehicle.into(),
        cold_chain: request.cold_chain,
        capacity: request.capacity,
        location: Some(request.location.point()),
    }
}

async fn assignments(
    context: &Context,
    mut client: DeliveryServiceClient<Traced>,
    request: AssignmentsArgs,
) -> Result<(), CliError> {
    let courier = request.courier_id.clone();
    let mut stream = client
        .stream_assignments(act_as(
            Role::Courier,
            &courier,
            StreamAssignmentsRequest {
                courier_id: request.courier_id,
            },
        ))
        .await
        .answered_by(Service::Delivery)?;
    let failed = |status| CliError::Rpc {
        service: Service::Delivery,
        status,
    };
    let printer = context.printer;
    if request.follow {
        while let Some(assignment) = stream.message().await.map_err(failed)? {
            printer.show(&assignment, view::assignment_line, view::assignment_json)?;
        }
        return Err(CliError::StreamEnded {
            service: Service::Delivery,
            what: "it stopped sending assignments".to_owned(),
        });
    }
    let mut open = Vec::new();
    while let Ok(next) = tokio::time::timeout(OPEN_ASSIGNMENTS_SETTLE, stream.message()).await {
        match next.map_err(failed)? {
            Some(assignment) => open.push(assignment),
            None => break,
        }
    }
    if printer.quiet {
        for assignment in &open {
            printer.show(assignment, view::assignment_line, view::assignment_json)?;
        }
    } else if printer.json {
        // One object per line, as with --follow, so a script reads both alike.
        for assignment in &open {
            printer.write(&view::assignment_json(assignment).to_string())?;
        }
    } else {
        printer.write(&view::assignments_human(&open))?;
    }
    Ok(())
}

pub async fn shipment(context: &Context, command: ShipmentCommand) -> Result<(), CliError> {
    let mut client = context.delivery().await?;
    let shipment = match command {
        ShipmentCommand::Show(ShipmentId { shipment_id }) => {
            client
                .get_shipment(context.unary(GetShipmentRequest { shipment_id }))
                .await
        }
        ShipmentCommand::Pickup(request) => {
            client
                .confirm_pickup(context.unary_as(
                    Role::Courier,
                    &request.courier.clone(),
                    ConfirmPickupRequest {
                        courier_id: request.courier,
                        shipment_id: request.shipment_id,
                    },
                ))
                .await
        }
        ShipmentCommand::Deliver(request) => {
            // An override is an operator's; the code, the courier's.
            let (role, subject) = match request.override_reason {
                Some(_) => (Role::Operator, harvest_kit::issuer::OPERATOR.to_owned()),
                None => (Role::Courier, request.step.courier.clone()),
            };
            client
                .confirm_delivery(context.unary_as(
                    role,
                    &subject,
                    ConfirmDeliveryRequest {
                        courier_id: request.step.courier,
                        shipment_id: request.step.shipment_id,
                        recipient_name: request.recipient,
                        proof_reference: request.proof.unwrap_or_default(),
                        delivery_code: request.code.unwrap_or_default(),
                        override_reason: request.override_reason.unwrap_or_default(),
                    },
                ))
                .await
        }
        ShipmentCommand::Fail(request) => {
            client
                .report_failure(context.unary_as(
                    Role::Courier,
                    &request.step.courier.clone(),
                    ReportFailureRequest {
                        courier_id: request.step.courier,
                        shipment_id: request.step.shipment_id,
                        reason: request.reason,
                    },
                ))
                .await
        }
    }
    .answered_by(Service::Delivery)?;
    context
        .printer
        .show(&shipment, view::shipment_human, view::shipment_json)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_request_carries_every_flag() {
        let request = RegisterArgs {
            name: "Li Qiang".to_owned(),
            county: "Luochuan".to_owned(),
            province: "Shaanxi".to_owned(),
            region: "north".to_owned(),
            vehicle: Vehicle::Van,
            cold_chain: true,
            capacity: 8,
            location: Location {
                lat: 35.76,
                lon: 109.43,
            },
            id: None,
            partner: "partner-local".to_owned(),
        };
        let sent = register_request(request);
        assert_eq!(sent.courier_id, "");
        assert_eq!(sent.vehicle, Vehicle::Van as i32);
        assert_eq!(sent.location.map(|p| p.longitude), Some(109.43));
        assert!(sent.cold_chain);
    }
}
