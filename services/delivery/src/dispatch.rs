//! Moving shipments forward: finding couriers, publishing what happened, and
//! giving capacity back.
//!
//! [`Dispatcher::advance`] is the one way a shipment makes progress after a
//! step: it publishes the events its history implies that the broker has not
//! acknowledged yet (in order), looks for a courier while it waits for one,
//! fails it once its deadline passes, and gives back every unit of courier
//! capacity it no longer needs. It can run any number of times, from any
//! replica, concurrently: every write it makes is idempotent or guarded by a
//! script.
//!
//! Shipments that need work sit in a per-region sorted set scored by the time
//! of their next attempt. [`Dispatcher::sweep`] takes the due ones (each under
//! a lease, so replicas share the work and a dead replica's share is taken
//! over) and advances them. Before any step, the shipment is put in that set,
//! so that whatever a crash interrupts is finished later.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use harvest_bus::{PublishError, Publisher};
use harvest_domain::{Id, Region, Regions};
use harvest_kit::bells::{Bell, Bells};
use harvest_kit::service::TaskError;
use tokio_util::sync::CancellationToken;

use crate::config::AssignmentConfig;
use crate::events;
use crate::metrics;
use crate::model::{FailureKind, State, StoredShipment, now_ms};
use crate::store::{Claim, DeliveryStore, Step, StepOutcome, StoreError};

/// Due shipments one replica works on at once.
const SWEEP_CONCURRENCY: usize = 16;
/// The longest a sweeper sleeps between two looks at its region.
const MAX_SWEEP_TICK: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("could not publish a delivery event")]
    Publish(#[from] PublishError),
}

/// What one attempt to find a courier came to.
enum Attempt {
    Assigned,
    NoCourier,
    /// Something else moved the shipment on meanwhile.
    Overtaken,
}

pub struct Dispatcher {
    store: DeliveryStore,
    publisher: Publisher,
    regions: Regions,
    settings: AssignmentConfig,
    /// Rung when a courier gets a new assignment, so that its open
    /// assignment streams look at once.
    bells: Bells<Id>,
}

impl Dispatcher {
    pub fn new(
        store: DeliveryStore,
        publisher: Publisher,
        regions: Regions,
        settings: AssignmentConfig,
    ) -> Self {
        Dispatcher {
            store,
            publisher,
            regions,
            settings,
            bells: Bells::default(),
        }
    }

    pub fn store(&self) -> &DeliveryStore {
        &self.store
    }

    /// Every region of the deployment.
    pub fn regions(&self) -> &Regions {
        &self.regions
    }

    pub fn settings(&self) -> &AssignmentConfig {
        &self.settings
    }

    /// Rings when `courier_id` gets a new assignment on this replica.
    pub fn assignments_bell(&self, courier_id: &Id) -> Bell<Id> {
        self.bells.listen(courier_id.clone())
    }

    /// Puts the shipment in line for the sweeper a lease from now: the safety
    /// net under a step about to be taken. The sweeper steps in only should
    /// the step not finish (the step's own `advance` takes it out of line).
    pub async fn hold(&self, region: &Region, shipment_id: &Id) -> Result<(), DispatchError> {
        let at = now_ms() + self.settings.claim_lease_ms as i64;
        self.store.schedule(region, shipment_id, at).await?;
        Ok(())
    }

    /// Takes a step and counts the shipments that end with it.
    pub async fn step(&self, shipment_id: &Id, step: Step<'_>) -> Result<StepOutcome, StoreError> {
        let outcome = self.store.step(shipment_id, step, now_ms()).await?;
        if outcome == StepOutcome::Changed {
            let finished = match step {
                Step::Deliver { .. } => Some("delivered"),
                Step::Expire { .. } => Some(FailureKind::NoCourier.as_str()),
                Step::Fail { .. } => Some(FailureKind::DeliveryFailed.as_str()),
                Step::Withdraw => Some("withdrawn"),
                Step::Assign { .. } | Step::PickUp { .. } => None,
            };
            if let Some(outcome) = finished {
                ::metrics::counter!(metrics::SHIPMENTS_FINISHED, "outcome" => outcome).increment(1);
            }
        }
        Ok(outcome)
    }

    /// Brings a shipment up to date (see the module documentation) and returns
    /// it as it then stands; `None` when there is no such shipment.
    #[tracing::instrument(skip_all, fields(shipment_id = %shipment_id))]
    pub async fn advance(&self, shipment_id: &Id) -> Result<Option<StoredShipment>, DispatchError> {
        let Some(mut shipment) = self.store.shipment(shipment_id).await? else {
            return Ok(None);
        };
        if shipment.state == State::Awaiting {
            // Created goes out before anything that follows it.
            self.announce(&shipment).await?;
            let now = now_ms();
            if now >= shipment.assign_by_ms {
                let reason = format!(
                    "no courier could take the shipment within {} s",
                    self.settings.deadline_secs
                );
                self.step(shipment_id, Step::Expire { reason: &reason })
                    .await?;
            } else {
                match self.try_assign(&shipment).await? {
                    Attempt::Assigned | Attempt::Overtaken => {}
                    Attempt::NoCourier => {
                        let next = (now + self.settings.retry_interval_ms as i64)
                            .min(shipment.assign_by_ms);
                        self.store
                            .schedule(&shipment.region, shipment_id, next)
                            .await?;
                        return Ok(Some(shipment));
                    }
                }
            }
            let Some(reloaded) = self.store.shipment(shipment_id).await? else {
                return Ok(None);
            };
            shipment = reloaded;
        }
        self.announce(&shipment).await?;
        self.settle(&shipment).await?;
        self.store
            .unschedule(&shipment.region, shipment_id.as_str())
            .await?;
        if shipment.state == State::Assigned
            && let Some(courier) = &shipment.courier_id
        {
            // Nobody listening is fine.
            self.bells.ring(courier);
        }
        Ok(Some(shipment))
    }

    /// Publishes, oldest first, the events of the shipment's history that the
    /// broker has not acknowledged yet.
    async fn announce(&self, shipment: &StoredShipment) -> Result<(), DispatchError> {
        for milestone in events::unannounced(shipment) {
            self.publisher
                .publish(events::envelope(shipment, milestone))
                .await?;
            self.store
                .mark_announced(&shipment.shipment_id, milestone.name())
                .await?;
            tracing::debug!(event = milestone.name(), "shipment event published");
        }
        Ok(())
    }

    /// Gives back every unit of courier capacity the shipment holds but no
    /// longer needs: all of them once it is over, all but its courier's while
    /// that courier carries it. Only for shipments past waiting: while one
    /// waits, a claim may belong to an attempt still in flight.
    async fn settle(&self, shipment: &StoredShipment) -> Result<(), DispatchError> {
        let keep = shipment
            .courier_id
            .as_ref()
            .filter(|_| shipment.state.is_open());
        for courier in self.store.claims(&shipment.shipment_id).await? {
            if Some(&courier) == keep {
                continue;
            }
            if self
                .store
                .release_courier(&courier, &shipment.shipment_id)
                .await?
            {
                tracing::debug!(courier_id = %courier, "courier capacity given back");
            }
        }
        Ok(())
    }

    /// Claims the nearest courier that can carry the shipment and gives the
    /// shipment to it.
    async fn try_assign(&self, shipment: &StoredShipment) -> Result<Attempt, DispatchError> {
        let Some(point) = shipment
            .contents
            .pickup_point
            .as_ref()
            .and_then(|point| point.location)
        else {
            // Checked when the shipment was created; nothing to search from.
            return Ok(Attempt::NoCourier);
        };
        let cold_chain = shipment.contents.cold_chain;
        let candidates = self
            .store
            .nearby_couriers(
                &shipment.pool,
                &point,
                cold_chain,
                self.settings.search_radius_km,
                self.settings.max_candidates,
            )
            .await?;
        let shipment_id = &shipment.shipment_id;
        for candidate in candidates {
            let courier = &candidate.courier_id;
            self.store.record_claim(shipment_id, courier).await?;
            let claim = self
                .store
                .claim_courier(courier, shipment_id, &shipment.pool, cold_chain, now_ms())
                .await?;
            if let Claim::Refused(why) = claim {
                tracing::debug!(courier_id = %courier, why, "courier cannot take the shipment");
                continue;
            }
            let assigned = self
                .step(
                    shipment_id,
                    Step::Assign {
                        courier,
                        distance_meters: candidate.distance_meters,
                    },
                )
                .await?;
            if matches!(assigned, StepOutcome::Changed | StepOutcome::Unchanged) {
                if assigned == StepOutcome::Changed {
                    let waited = (now_ms() - shipment.created_at_ms).max(0) as f64 / 1_000.0;
                    ::metrics::histogram!(metrics::ASSIGNMENT_WAIT_SECONDS).record(waited);
                    tracing::info!(
                        courier_id = %courier,
                        distance_meters = candidate.distance_meters,
                        "courier assigned",
                    );
                }
                ::metrics::counter!(metrics::ASSIGNMENT_ATTEMPTS, "outcome" => "assigned")
                    .increment(1);
                return Ok(Attempt::Assigned);
            }
            // Withdrawn, or given to another courier, meanwhile.
            self.store.release_courier(courier, shipment_id).await?;
            ::metrics::counter!(metrics::ASSIGNMENT_ATTEMPTS, "outcome" => "lost").increment(1);
            return Ok(Attempt::Overtaken);
        }
        ::metrics::counter!(metrics::ASSIGNMENT_ATTEMPTS, "outcome" => "no_courier").increment(1);
        Ok(Attempt::NoCourier)
    }

    /// Advances the region's due shipments until `shutdown`. Failures are
    /// logged and retried when the shipment's lease runs out; they never stop
    /// the sweeper.
    pub async fn sweep(
        self: Arc<Self>,
        region: Region,
        shutdown: CancellationToken,
    ) -> Result<(), TaskError> {
        let tick = self.settings.retry_interval().min(MAX_SWEEP_TICK);
        let batch = self.settings.sweep_batch;
        tracing::info!(%region, ?tick, "sweeper started");
        loop {
            let due = match self
                .store
                .claim_due(&region, now_ms(), self.settings.claim_lease(), batch)
                .await
            {
                Ok(due) => due,
                Err(error) => {
                    tracing::warn!(%region, error.cause_chain = ?error, "could not take due shipments");
                    Vec::new()
                }
            };
            let full_batch = due.len() == batch as usize;
            futures::stream::iter(due)
                .for_each_concurrent(SWEEP_CONCURRENCY, |shipment_id| {
                    self.sweep_one(&region, shipment_id)
                })
                .await;
            if let Ok(pending) = self.store.pending_count(&region).await {
                ::metrics::gauge!(metrics::PENDING_SHIPMENTS, "region" => region.to_string())
                    .set(pending as f64);
            }
            if full_batch && !shutdown.is_cancelled() {
                continue;
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(tick) => {}
            }
        }
        tracing::info!(%region, "sweeper stopped");
        Ok(())
    }

    async fn sweep_one(&self, region: &Region, shipment_id: String) {
        let advanced = match Id::parse(&shipment_id) {
            Ok(id) => self.advance(&id).await,
            Err(_) => Ok(None),
        };
        match advanced {
            Ok(Some(_)) => {}
            Ok(None) => {
                // Expired or never created: nothing left to do for it.
                if let Err(error) = self.store.unschedule(region, &shipment_id).await {
                    tracing::warn!(%shipment_id, error.cause_chain = ?error, "could not drop a vanished shipment");
                }
            }
            Err(error) => {
                tracing::warn!(%shipment_id, error.cause_chain = ?error, "could not advance a shipment; will retry");
            }
        }
    }
}
