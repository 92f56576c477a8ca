//! The delivery service's gRPC API, for courier systems.
//!
//! Every request is checked before anything is written; a courier acts only
//! on shipments given to it; a step the shipment already took returns the
//! shipment and publishes nothing new.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use harvest_bus::PartnerId;
use harvest_domain::{Id, encode_page_token};
use harvest_kit::audit::{AuditLog, Change};
use harvest_kit::auth::{self, Identity, Role, Rule, caller};
use harvest_kit::bells::Bell;
use harvest_proto::common::v1::{AuditAction, ListAuditRecordsRequest, ListAuditRecordsResponse};
use harvest_proto::delivery::v1::delivery_service_server::DeliveryService;
use harvest_proto::delivery::v1::{
    Assignment, ConfirmDeliveryRequest, ConfirmPickupRequest, Courier, GetShipmentRequest,
    ListCouriersRequest, ListCouriersResponse, RegisterCourierRequest, ReportFailureRequest,
    Shipment, StreamAssignmentsRequest, UpdateCourierStatusRequest,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::dispatch::Dispatcher;
use crate::error::DeliveryError;
use crate::metrics;
use crate::model::{self, FailureKind, State, StoredShipment, now_ms, timestamp};
use crate::partners::PartnerTopics;
use crate::store::{Registration, Step, StepOutcome};

/// Who may call each method of the API, by role: one rule a method. A rule
/// does not say whose records the caller may touch (a buyer's own orders, a
/// seller's own products).
pub const RULES: &[Rule] = &[
    Rule {
        method: "/harvest.delivery.v1.DeliveryService/RegisterCourier",
        roles: &[Role::Partner],
    },
    Rule {
        method: "/harvest.delivery.v1.DeliveryService/UpdateCourierStatus",
        roles: &[Role::Courier, Role::Partner],
    },
    Rule {
        method: "/harvest.delivery.v1.DeliveryService/StreamAssignments",
        roles: &[Role::Courier],
    },
    Rule {
        method: "/harvest.delivery.v1.DeliveryService/ConfirmPickup",
        roles: &[Role::Courier],
    },
    Rule {
        method: "/harvest.delivery.v1.DeliveryService/ConfirmDelivery",
        roles: &[Role::Courier, Role::Operator],
    },
    Rule {
        method: "/harvest.delivery.v1.DeliveryService/ReportFailure",
        roles: &[Role::Courier],
    },
    Rule {
        method: "/harvest.delivery.v1.DeliveryService/GetShipment",
        roles: &[Role::Courier, Role::Operator],
    },
    Rule {
        method: "/harvest.delivery.v1.DeliveryService/ListCouriers",
        roles: &[Role::Partner, Role::Operator],
    },
    Rule {
        method: "/harvest.delivery.v1.DeliveryService/ListAuditRecords",
        roles: &[Role::Operator],
    },
];

/// Couriers a page of ListCouriers holds when the request does not say, and
/// at most.
const DEFAULT_PAGE_SIZE: usize = 50;
const MAX_PAGE_SIZE: usize = 200;

/// Wrong delivery codes a shipment takes before only an operator can
/// confirm its delivery.
pub const MAX_CODE_FAILURES: u32 = 5;

/// Assignments buffered for a slow stream before it waits.
const STREAM_BUFFER: usize = 32;

pub struct DeliveryApi {
    dispatcher: Arc<Dispatcher>,
    partners: PartnerTopics,
    /// Operators' overrides of the delivery code, for operators.
    audit: AuditLog,
    shutdown: CancellationToken,
}

/// A courier's step, checked.
enum CourierStep {
    PickUp,
    Deliver {
        recipient_name: String,
        proof_reference: String,
        /// The buyer's code, from a courier.
        code: String,
        /// An operator's confirmation without the code: who, why.
        overridden: Option<(String, String)>,
    },
    Fail {
        reason: String,
    },
}

impl CourierStep {
    fn verb(&self) -> &'static str {
        match self {
            CourierStep::PickUp => "picked up",
            CourierStep::Deliver { .. } => "delivered",
            CourierStep::Fail { .. } => "reported failed",
        }
    }

    /// Whether the step is possible from `shipment`'s state (or was already
    /// taken).
    fn possible_from(&self, shipment: &StoredShipment) -> bool {
        match self {
            CourierStep::PickUp => matches!(shipment.state, State::Assigned | State::PickedUp),
            CourierStep::Deliver { .. } => {
                matches!(shipment.state, State::PickedUp | State::Delivered)
            }
            CourierStep::Fail { .. } => {
                shipment.state.is_open()
                    || (shipment.state == State::Failed
                        && shipment.failure == Some(FailureKind::DeliveryFailed))
            }
        }
    }
}

/// The refusal of a courier's step on a shipment that is not the courier's:
/// never given to it, or taken back from it.
fn not_theirs(shipment: &StoredShipment, courier: &Id) -> DeliveryError {
    let shipment_id = &shipment.shipment_id;
    DeliveryError::PermissionDenied(if shipment.passed_over(courier) {
        format!(
            "shipment {shipment_id} was taken back from courier {courier}, who did not pick it up in time"
        )
    } else {
        format!("shipment {shipment_id} is not assigned to courier {courier}")
    })
}

fn cannot(step: &CourierStep, shipment_id: &Id, state: State) -> DeliveryError {
    DeliveryError::FailedPrecondition(format!(
        "shipment {shipment_id} is {}; it cannot be {} now",
        state.as_str().replace('_', " "),
        step.verb()
    ))
}

impl DeliveryApi {
    /// `shutdown` ends the open assignment streams, so the server can drain.
    pub fn new(
        dispatcher: Arc<Dispatcher>,
        partners: PartnerTopics,
        audit: AuditLog,
        shutdown: CancellationToken,
    ) -> Self {
        DeliveryApi {
            dispatcher,
            partners,
            audit,
            shutdown,
        }
    }

    /// Records an operator's confirmation of `shipment`'s delivery without
    /// the buyer's code, once the shipment is delivered so. Only the
    /// operator whom the shipment names as having confirmed it is recorded:
    /// a repeated call by them adds nothing (or writes a record an earlier
    /// call could not), and another operator's call, or one on a shipment
    /// its courier delivered with the code, records nothing.
    async fn record_override(&self, operator: &Identity, shipment: &StoredShipment) {
        if shipment.state != State::Delivered || shipment.overridden_by != operator.subject {
            return;
        }
        let shipment_id = shipment.shipment_id.as_str();
        let courier = shipment.courier_id.as_ref().map_or("", |id| id.as_str());
        let change = Change {
            action: AuditAction::DeliveryOverridden,
            subject: shipment_id,
            detail: format!(
                "delivered to {} for courier {courier} without the buyer's code (order {})",
                shipment.recipient_name, shipment.order_id
            ),
            reason: &shipment.override_reason,
            cause: &[shipment_id],
        };
        self.audit.record(Some(operator), change).await;
    }

    async fn existing_courier(&self, courier_id: &str) -> Result<Courier, DeliveryError> {
        let id = model::parse_id("courier_id", courier_id)?;
        self.dispatcher
            .store()
            .courier(&id)
            .await?
            .ok_or_else(|| DeliveryError::NotFound(format!("courier {id} is not registered")))
    }

    async fn existing_shipment(&self, shipment_id: &Id) -> Result<StoredShipment, DeliveryError> {
        self.dispatcher
            .store()
            .shipment(shipment_id)
            .await?
            .ok_or_else(|| {
                DeliveryError::NotFound(format!("shipment {shipment_id} does not exist"))
            })
    }

    #[tracing::instrument(skip_all, fields(courier_id = %request.courier_id))]
    async fn register_courier(
        &self,
        caller: Option<&Identity>,
        request: RegisterCourierRequest,
    ) -> Result<Courier, DeliveryError> {
        let courier = model::new_courier(&request, self.dispatcher.regions())?;
        let partner = caller
            .filter(|caller| caller.role == Role::Partner)
            .map(|caller| PartnerId::parse(&caller.subject))
            .transpose()
            .map_err(DeliveryError::FailedPrecondition)?;
        if let Some(partner) = &partner {
            self.partners.ensure(partner).await?;
        }
        let partner = partner.as_ref().map_or("", PartnerId::as_str);
        let registration = self
            .dispatcher
            .store()
            .register_courier(&courier, partner, now_ms())
            .await?;
        let stored = match registration {
            Registration::Registered(stored) => *stored,
            Registration::OtherPartner => {
                return Err(DeliveryError::PermissionDenied(format!(
                    "courier {} was registered by another partner",
                    courier.courier_id
                )));
            }
            // Without a location the courier could be given no shipment,
            // nor be told apart from one at (0, 0).
            Registration::NeedsLocation => {
                return Err(DeliveryError::invalid(
                    "location",
                    format!(
                        "is required to register courier {}, which is not registered yet",
                        courier.courier_id
                    ),
                ));
            }
        };
        tracing::info!(courier_id = %stored.courier_id, region = %stored.region, "courier registered");
        Ok(stored)
    }

    #[tracing::instrument(skip_all, fields(courier_id = %request.courier_id))]
    async fn update_courier_status(
        &self,
        caller: Option<&Identity>,
        mut request: UpdateCourierStatusRequest,
    ) -> Result<Courier, DeliveryError> {
        auth::act_as(caller, Role::Courier, "courier_id", &mut request.courier_id)?;
        let courier_id = model::parse_id("courier_id", &request.courier_id)?;
        let location = model::location("location", request.location.as_ref())?;
        if caller.is_some_and(|caller| caller.role == Role::Partner) {
            let courier = self.existing_courier(courier_id.as_str()).await?;
            auth::owned_by(
                caller,
                Role::Partner,
                &courier.partner_id,
                format_args!("courier {courier_id}"),
            )?;
        }
        self.dispatcher
            .store()
            .update_courier_status(&courier_id, request.available, location.as_ref(), now_ms())
            .await?
            .ok_or_else(|| {
                DeliveryError::NotFound(format!("courier {courier_id} is not registered"))
            })
    }

    /// Takes a courier's step on its shipment, then publishes what follows.
    #[tracing::instrument(skip_all, fields(courier_id = %courier_id, shipment_id = %shipment_id))]
    async fn courier_step(
        &self,
        caller: Option<&Identity>,
        courier_id: &str,
        shipment_id: &str,
        step: CourierStep,
    ) -> Result<StoredShipment, DeliveryError> {
        let mut courier_id = courier_id.to_owned();
        auth::act_as(caller, Role::Courier, "courier_id", &mut courier_id)?;
        let courier = model::parse_id("courier_id", &courier_id)?;
        let shipment_id = model::parse_id("shipment_id", shipment_id)?;
        self.existing_courier(courier.as_str()).await?;
        let current = self.existing_shipment(&shipment_id).await?;
        if !current.belongs_to(&courier) {
            return Err(not_theirs(&current, &courier));
        }
        if !step.possible_from(&current) {
            return Err(cannot(&step, &shipment_id, current.state));
        }
        if let CourierStep::Deliver {
            code,
            overridden: None,
            ..
        } = &step
        {
            self.check_code(&current, code).await?;
        }
        // In line first, so a crash between the step and its event is
        // finished by the sweeper.
        self.dispatcher.hold(&current.region, &shipment_id).await?;
        let store_step = match &step {
            CourierStep::PickUp => Step::PickUp { courier: &courier },
            CourierStep::Deliver {
                recipient_name,
                proof_reference,
                overridden,
                ..
            } => Step::Deliver {
                courier: &courier,
                recipient_name,
                proof_reference,
                overridden: overridden
                    .as_ref()
                    .map(|(by, why)| (by.as_str(), why.as_str())),
            },
            CourierStep::Fail { reason } => Step::Fail {
                courier: &courier,
                reason,
            },
        };
        let refusal = match self.dispatcher.step(&shipment_id, store_step).await? {
            StepOutcome::Changed => {
                tracing::info!(step = step.verb(), "courier step taken");
                None
            }
            StepOutcome::Unchanged => None,
            // The shipment moved between the check and the step.
            StepOutcome::Forbidden => {
                let now = self.existing_shipment(&shipment_id).await?;
                Some(not_theirs(&now, &courier))
            }
            StepOutcome::Refused(state) => Some(cannot(&step, &shipment_id, state)),
            StepOutcome::Missing => Some(DeliveryError::NotFound(format!(
                "shipment {shipment_id} does not exist"
            ))),
        };
        if let Some(refusal) = refusal {
            // Back in line for its own next deadline (or out, if over).
            self.dispatcher.advance(&shipment_id).await?;
            return Err(refusal);
        }
        let shipment = self
            .dispatcher
            .advance(&shipment_id)
            .await?
            .ok_or_else(|| {
                DeliveryError::NotFound(format!("shipment {shipment_id} does not exist"))
            })?;
        Ok(shipment)
    }

    /// The buyer's code for `shipment`, as a courier gave it: a wrong one is
    /// counted, and after [`MAX_CODE_FAILURES`] none is taken.
    async fn check_code(&self, shipment: &StoredShipment, code: &str) -> Result<(), DeliveryError> {
        if shipment.code_digest.is_empty() {
            return Ok(());
        }
        let shipment_id = &shipment.shipment_id;
        if shipment.code_failures >= MAX_CODE_FAILURES {
            return Err(DeliveryError::FailedPrecondition(format!(
                "shipment {shipment_id} took {MAX_CODE_FAILURES} wrong delivery codes and takes no \
                 more; an operator must confirm its delivery"
            )));
        }
        let given = code.trim();
        if given.is_empty() {
            return Err(DeliveryError::invalid(
                "delivery_code",
                "is required: the buyer's code for the order",
            ));
        }
        let digest = harvest_domain::delivery_code::digest_of(shipment.order_id.as_str(), given);
        if digest == shipment.code_digest {
            return Ok(());
        }
        let failures = self
            .dispatcher
            .store()
            .count_code_failure(shipment_id)
            .await?;
        tracing::warn!(%shipment_id, failures, "wrong delivery code");
        let left = i64::from(MAX_CODE_FAILURES).saturating_sub(failures).max(0);
        Err(DeliveryError::PermissionDenied(format!(
            "delivery_code is not the buyer's code for shipment {shipment_id}; {left} tries left"
        )))
    }

    #[tracing::instrument(skip_all, fields(courier_id = %request.courier_id))]
    async fn stream_assignments(
        &self,
        caller: Option<&Identity>,
        mut request: StreamAssignmentsRequest,
    ) -> Result<ReceiverStream<Result<Assignment, Status>>, DeliveryError> {
        auth::act_as(caller, Role::Courier, "courier_id", &mut request.courier_id)?;
        let courier = self.existing_courier(&request.courier_id).await?;
        let courier_id = model::parse_id("courier_id", &courier.courier_id)?;
        let (sender, receiver) = mpsc::channel(STREAM_BUFFER);
        let feed = AssignmentFeed {
            dispatcher: self.dispatcher.clone(),
            bell: self.dispatcher.assignments_bell(&courier_id),
            courier_id,
            poll: self.dispatcher.settings().stream_poll(),
            shutdown: self.shutdown.clone(),
        };
        tokio::spawn(feed.run(sender));
        Ok(ReceiverStream::new(receiver))
    }
}

/// Feeds one StreamAssignments call: the courier's open assignments, then
/// each new one. Looks when this replica assigns the courier something, and
/// every poll interval for what other replicas assign. One feed's failure or
/// disconnect touches no other.
struct AssignmentFeed {
    dispatcher: Arc<Dispatcher>,
    courier_id: Id,
    bell: Bell<Id>,
    poll: Duration,
    shutdown: CancellationToken,
}

impl AssignmentFeed {
    #[tracing::instrument(skip_all, fields(courier_id = %self.courier_id))]
    async fn run(mut self, sender: mpsc::Sender<Result<Assignment, Status>>) {
        ::metrics::gauge!(metrics::ASSIGNMENT_STREAMS).increment(1.0);
        tracing::debug!("assignment stream opened");
        let mut sent: HashSet<Id> = HashSet::new();
        let shutdown = self.shutdown.clone();
        loop {
            match self.send_new(&sender, &mut sent).await {
                Ok(true) => {}
                Ok(false) => break,
                Err(error) => {
                    tracing::warn!(error.cause_chain = ?error, "could not read assignments; will retry");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = sender.closed() => break,
                () = self.wait_for_bell() => {}
            }
        }
        ::metrics::gauge!(metrics::ASSIGNMENT_STREAMS).decrement(1.0);
        tracing::debug!("assignment stream closed");
    }

    /// Sends the open assignments not sent yet. False once the caller is gone.
    async fn send_new(
        &self,
        sender: &mpsc::Sender<Result<Assignment, Status>>,
        sent: &mut HashSet<Id>,
    ) -> Result<bool, DeliveryError> {
        let store = self.dispatcher.store();
        let open: Vec<Id> = store
            .open_shipments(&self.courier_id)
            .await?
            .iter()
            .filter_map(|id| Id::parse(id).ok())
            .collect();
        // Forget what is no longer open, so memory stays bounded.
        sent.retain(|id| open.contains(id));
        for shipment_id in open {
            if sent.contains(&shipment_id) {
                continue;
            }
            let Some(shipment) = store.shipment(&shipment_id).await? else {
                continue;
            };
            // A claim still being decided, or one lost to another courier.
            if !(shipment.state.is_open() && shipment.belongs_to(&self.courier_id)) {
                continue;
            }
            let assignment = Assignment {
                assigned_at: shipment.assigned_at_ms.map(timestamp),
                shipment: Some(shipment.to_proto()),
            };
            if sender.send(Ok(assignment)).await.is_err() {
                return Ok(false);
            }
            sent.insert(shipment_id);
        }
        Ok(true)
    }

    /// Returns when this courier's bell rings, or when it is time to poll.
    async fn wait_for_bell(&mut self) {
        tokio::select! {
            () = tokio::time::sleep(self.poll) => {}
            () = self.bell.rung() => {}
        }
    }
}

#[tonic::async_trait]
impl DeliveryService for DeliveryApi {
    async fn register_courier(
        &self,
        request: Request<RegisterCourierRequest>,
    ) -> Result<Response<Courier>, Status> {
        let caller = caller(&request);
        Ok(Response::new(
            self.register_courier(caller.as_ref(), request.into_inner())
                .await?,
        ))
    }

    async fn update_courier_status(
        &self,
        request: Request<UpdateCourierStatusRequest>,
    ) -> Result<Response<Courier>, Status> {
        let caller = caller(&request);
        Ok(Response::new(
            self.update_courier_status(caller.as_ref(), request.into_inner())
                .await?,
        ))
    }

    type StreamAssignmentsStream = ReceiverStream<Result<Assignment, Status>>;

    async fn stream_assignments(
        &self,
        request: Request<StreamAssignmentsRequest>,
    ) -> Result<Response<Self::StreamAssignmentsStream>, Status> {
        let caller = caller(&request);
        Ok(Response::new(
            self.stream_assignments(caller.as_ref(), request.into_inner())
                .await?,
        ))
    }

    async fn confirm_pickup(
        &self,
        request: Request<ConfirmPickupRequest>,
    ) -> Result<Response<Shipment>, Status> {
        let caller = caller(&request);
        let request = request.into_inner();
        let shipment = self
            .courier_step(
                caller.as_ref(),
                &request.courier_id,
                &request.shipment_id,
                CourierStep::PickUp,
            )
            .await?;
        Ok(Response::new(shipment.to_proto()))
    }

    async fn confirm_delivery(
        &self,
        request: Request<ConfirmDeliveryRequest>,
    ) -> Result<Response<Shipment>, Status> {
        let caller = caller(&request);
        let mut request = request.into_inner();
        // An operator confirms for the shipment's courier, with a reason
        // instead of the buyer's code.
        let operator = caller.as_ref().filter(|c| c.role == Role::Operator);
        let overridden = match operator {
            Some(operator) => {
                let reason = model::override_reason(&request.override_reason)?;
                let shipment_id = model::parse_id("shipment_id", &request.shipment_id)?;
                let shipment = self.existing_shipment(&shipment_id).await?;
                let courier = shipment.courier_id.ok_or_else(|| {
                    DeliveryError::FailedPrecondition(format!(
                        "shipment {shipment_id} has no courier to have delivered it"
                    ))
                })?;
                request.courier_id = courier.to_string();
                Some((operator.subject.clone(), reason))
            }
            None => None,
        };
        let step = CourierStep::Deliver {
            recipient_name: model::recipient_name(&request.recipient_name)?,
            proof_reference: model::proof_reference(&request.proof_reference)?,
            code: request.delivery_code.clone(),
            overridden,
        };
        let shipment = self
            .courier_step(
                caller.as_ref(),
                &request.courier_id,
                &request.shipment_id,
                step,
            )
            .await?;
        if let Some(operator) = operator {
            self.record_override(operator, &shipment).await;
        }
        Ok(Response::new(shipment.to_proto()))
    }

    async fn report_failure(
        &self,
        request: Request<ReportFailureRequest>,
    ) -> Result<Response<Shipment>, Status> {
        let caller = caller(&request);
        let request = request.into_inner();
        let step = CourierStep::Fail {
            reason: model::failure_reason(&request.reason)?,
        };
        let shipment = self
            .courier_step(
                caller.as_ref(),
                &request.courier_id,
                &request.shipment_id,
                step,
            )
            .await?;
        Ok(Response::new(shipment.to_proto()))
    }

    async fn get_shipment(
        &self,
        request: Request<GetShipmentRequest>,
    ) -> Result<Response<Shipment>, Status> {
        let caller = caller(&request);
        let shipment_id = model::parse_id("shipment_id", &request.into_inner().shipment_id)?;
        let shipment = self.existing_shipment(&shipment_id).await?;
        // A courier sees only the shipments given to it.
        let courier = shipment
            .courier_id
            .as_ref()
            .map_or("", |courier| courier.as_str());
        auth::owned_by(
            caller.as_ref(),
            Role::Courier,
            courier,
            format_args!("shipment {shipment_id}"),
        )
        .map_err(DeliveryError::from)?;
        Ok(Response::new(shipment.to_proto()))
    }

    async fn list_couriers(
        &self,
        request: Request<ListCouriersRequest>,
    ) -> Result<Response<ListCouriersResponse>, Status> {
        let caller = caller(&request);
        let mut request = request.into_inner();
        auth::act_as(
            caller.as_ref(),
            Role::Partner,
            "partner_id",
            &mut request.partner_id,
        )
        .map_err(DeliveryError::from)?;
        if request.partner_id.is_empty() {
            return Err(DeliveryError::invalid("partner_id", "is required").into());
        }
        let partner = PartnerId::parse(&request.partner_id)
            .map_err(|problem| DeliveryError::invalid("partner_id", problem))?;
        let page_size =
            harvest_domain::page_size(request.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
                .map_err(|reason| DeliveryError::invalid("page_size", reason))?;
        let after = match request.page_token.as_str() {
            "" => None,
            token => Some(harvest_domain::decode_id_page_token(token).ok_or_else(|| {
                DeliveryError::invalid("page_token", harvest_domain::NOT_A_PAGE_TOKEN)
            })?),
        };
        let (couriers, next) = self
            .dispatcher
            .store()
            .partner_couriers(partner.as_str(), after.as_deref(), page_size)
            .await
            .map_err(DeliveryError::from)?;
        Ok(Response::new(ListCouriersResponse {
            couriers,
            next_page_token: next.as_deref().map(encode_page_token).unwrap_or_default(),
        }))
    }

    async fn list_audit_records(
        &self,
        request: Request<ListAuditRecordsRequest>,
    ) -> Result<Response<ListAuditRecordsResponse>, Status> {
        Ok(Response::new(self.audit.list(request.into_inner()).await?))
    }
}

#[cfg(test)]
mod access_rules {
    #[test]
    fn every_method_has_one_rule() {
        harvest_kit::auth::check_rules("harvest.delivery.v1.DeliveryService", super::RULES)
            .expect("one rule a method");
    }
}
