//! Moving shipments forward: finding couriers, publishing what happened, and
//! giving capacity back.
//!
//! [`Dispatcher::advance`] is the one way a shipment makes progress after a
//! step: it publishes the events its history implies that the broker has not
//! acknowledged yet (in order), acts on whichever of its deadlines has passed
//! (see [`due`]), looks for a courier while it waits for one, and gives back
//! every unit of courier capacity it no longer needs. It can run any number
//! of times, from any replica, concurrently: every write it makes is
//! idempotent or guarded by a script.
//!
//! The deadlines:
//! - waiting for a courier: `assignment.deadline_secs` after creation, or
//!   after the shipment was taken back from a courier; then it fails (no
//!   courier);
//! - assigned: `assignment.pickup_deadline_secs` after the assignment; then
//!   it is taken back from the courier (who is told so by `CourierReleased`
//!   and never offered it again) and waits for another;
//! - picked up: `assignment.transit_deadline_secs` after the pickup it is
//!   flagged overdue (once), and `assignment.transit_give_up_secs` after the
//!   pickup it fails (delivery failed).
//!
//! Every unfinished shipment sits in a per-region sorted set scored by the
//! time of its next attempt or deadline. [`Dispatcher::sweep`] takes the due
//! ones (each under a lease, so replicas share the work and a dead replica's
//! share is taken over) and advances them. Before any step, the shipment is
//! put in that set, so that whatever a crash interrupts is finished later.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use harvest_bus::{PartnerId, PublishError, Publisher};
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

/// How soon a courier partner's copy of an event that the broker did not
/// acknowledge is tried again: not at once, since the likely cause (the
/// partner's topic missing) costs a publish timeout per try.
const PARTNER_COPY_RETRY: Duration = Duration::from_secs(30);

/// How long after a shipment ended its partner's copies are still tried.
const PARTNER_COPY_GIVE_UP: Duration = Duration::from_secs(24 * 3600);

/// Steps one `advance` takes at most: a release, then an assignment (or an
/// expiry); or an overdue flag, then a give-up. A lost race costs one more.
const MAX_STEPS_PER_ADVANCE: usize = 4;

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
    /// Partners whose last copy the broker did not acknowledge, and until
    /// when no copy is tried for them on this replica.
    partners_failing: Mutex<HashMap<PartnerId, Instant>>,
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
            partners_failing: Mutex::default(),
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
    /// the step not finish (the step's own `advance` puts it back in line at
    /// its next deadline, or out of line once it is over).
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
                Step::Fail { .. } | Step::GiveUp { .. } => {
                    Some(FailureKind::DeliveryFailed.as_str())
                }
                Step::Withdraw => Some("withdrawn"),
                Step::Assign { .. }
                | Step::Release { .. }
                | Step::FlagOverdue { .. }
                | Step::PickUp { .. } => None,
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
        // What happened so far goes out before anything that follows it.
        let mut partners_done = self.announce(&shipment).await?;
        for _ in 0..MAX_STEPS_PER_ADVANCE {
            let due = due(&shipment, &self.settings, now_ms());
            if !self.act(&shipment, due).await? {
                break;
            }
            let Some(reloaded) = self.store.shipment(shipment_id).await? else {
                return Ok(None);
            };
            shipment = reloaded;
            partners_done = self.announce(&shipment).await?;
        }
        if shipment.state != State::Awaiting {
            self.settle(&shipment).await?;
        }
        let mut next = next_due_ms(&shipment, &self.settings, now_ms());
        let ended_long_ago = next.is_none()
            && now_ms() - shipment.updated_at_ms > PARTNER_COPY_GIVE_UP.as_millis() as i64;
        if !partners_done && ended_long_ago {
            // Its partner's topic has been missing for a day: the copies
            // are given up rather than tried for as long as the shipment
            // is kept.
            ::metrics::counter!(metrics::PARTNER_COPIES_GIVEN_UP).increment(1);
            tracing::warn!(
                "a courier partner's copies of a shipment's events given up a day after it ended"
            );
        } else if !partners_done {
            let retry = now_ms() + PARTNER_COPY_RETRY.as_millis() as i64;
            next = Some(next.map_or(retry, |at| at.min(retry)));
        }
        match next {
            Some(at) => {
                self.store
                    .schedule(&shipment.region, shipment_id, at)
                    .await?
            }
            None => {
                self.store
                    .unschedule(&shipment.region, shipment_id.as_str())
                    .await?
            }
        }
        if shipment.state == State::Assigned
            && let Some(courier) = &shipment.courier_id
        {
            // Nobody listening is fine.
            self.bells.ring(courier);
        }
        Ok(Some(shipment))
    }

    /// Takes the step that `due` calls for. False when there is nothing to do
    /// now (nothing due, or no courier found).
    async fn act(&self, shipment: &StoredShipment, due: Due) -> Result<bool, DispatchError> {
        let shipment_id = &shipment.shipment_id;
        match due {
            Due::Nothing => return Ok(false),
            Due::Search => {
                let attempt = self.search(shipment).await?;
                return Ok(!matches!(attempt, Attempt::NoCourier));
            }
            Due::Expire => {
                let reason = format!(
                    "no courier could take the shipment within {} s",
                    self.settings.deadline_secs
                );
                self.step(shipment_id, Step::Expire { reason: &reason })
                    .await?;
            }
            Due::Release => self.take_back(shipment).await?,
            Due::FlagOverdue { since_ms } => self.flag_overdue(shipment, since_ms).await?,
            Due::GiveUp => {
                let reason = format!(
                    "not delivered within {} s of pickup",
                    self.settings.transit_give_up_secs
                );
                self.step(shipment_id, Step::GiveUp { reason: &reason })
                    .await?;
            }
        }
        Ok(true)
    }

    /// Gives back the units of the couriers the waiting shipment was taken
    /// back from (should a crash have kept one), then looks for a courier.
    async fn search(&self, shipment: &StoredShipment) -> Result<Attempt, DispatchError> {
        for release in &shipment.releases {
            self.store
                .release_courier(&release.courier_id, &shipment.shipment_id)
                .await?;
        }
        self.try_assign(shipment).await
    }

    /// Takes the shipment back from its courier, who did not pick it up
    /// within the pickup deadline, and gives it a fresh search window: the
    /// assignment deadline again, from now.
    async fn take_back(&self, shipment: &StoredShipment) -> Result<(), DispatchError> {
        let Some(courier) = &shipment.courier_id else {
            return Ok(());
        };
        let assign_by_ms = now_ms() + self.settings.deadline().as_millis() as i64;
        let released = self
            .step(
                &shipment.shipment_id,
                Step::Release {
                    courier,
                    assign_by_ms,
                },
            )
            .await?;
        if released == StepOutcome::Changed {
            ::metrics::counter!(metrics::COURIERS_RELEASED).increment(1);
            tracing::info!(
                shipment_id = %shipment.shipment_id,
                courier_id = %courier,
                pickup_deadline_secs = self.settings.pickup_deadline_secs,
                "shipment taken back from a courier who did not pick it up in time",
            );
        }
        Ok(())
    }

    /// Flags a picked-up shipment overdue, once, and says so.
    async fn flag_overdue(
        &self,
        shipment: &StoredShipment,
        since_ms: i64,
    ) -> Result<(), DispatchError> {
        let flagged = self
            .step(&shipment.shipment_id, Step::FlagOverdue { since_ms })
            .await?;
        if flagged == StepOutcome::Changed {
            ::metrics::counter!(metrics::SHIPMENTS_OVERDUE).increment(1);
            tracing::warn!(
                shipment_id = %shipment.shipment_id,
                order_id = %shipment.order_id,
                courier_id = %shipment.courier_id.as_ref().map(Id::as_str).unwrap_or_default(),
                picked_up_at_ms = shipment.picked_up_at_ms,
                transit_deadline_secs = self.settings.transit_deadline_secs,
                "shipment overdue: not delivered within the transit deadline",
            );
        }
        Ok(())
    }

    /// Publishes, oldest first, the events of the shipment's history that the
    /// broker has not acknowledged yet, each with its courier partner's copy
    /// beside it. A partner's copy that is not acknowledged holds back that
    /// partner's later copies (they go out in order) but never the delivery
    /// stream; false when one is left for later.
    async fn announce(&self, shipment: &StoredShipment) -> Result<bool, DispatchError> {
        let mut partners_done = true;
        for missing in events::unannounced_anywhere(shipment) {
            let milestone = missing.milestone;
            let event = async {
                if !missing.event {
                    return Ok(None);
                }
                let published = self
                    .publisher
                    .publish(events::envelope(shipment, milestone))
                    .await?;
                Ok::<_, DispatchError>(Some(published))
            };
            let partner = missing
                .partner
                .filter(|partner| partners_done && !self.failing(partner));
            let copy = async {
                let partner = partner?;
                let envelope = events::partner_envelope(shipment, milestone);
                Some(self.publisher.publish_for_partner(partner, envelope).await)
            };
            let (event, copy) = tokio::join!(event, copy);
            let mut acknowledged = Vec::with_capacity(2);
            if event?.is_some() {
                acknowledged.push(milestone.name());
            }
            match copy {
                Some(Ok(_)) => acknowledged.push(events::partner_copy_name(milestone)),
                Some(Err(error)) => {
                    partners_done = false;
                    if let Some(partner) = partner {
                        self.pause_partner(partner);
                    }
                    ::metrics::counter!(metrics::PARTNER_COPIES_DELAYED).increment(1);
                    tracing::warn!(
                        partner_id = %partner.map(|partner| partner.as_str()).unwrap_or_default(),
                        event = milestone.name(),
                        error.cause_chain = ?error,
                        "a courier partner's copy of a shipment event was not acknowledged; \
                         it goes out again later",
                    );
                }
                None => partners_done &= missing.partner.is_none(),
            }
            self.store
                .mark_announced(&shipment.shipment_id, &acknowledged)
                .await?;
            tracing::debug!(event = milestone.name(), "shipment event published");
        }
        Ok(partners_done)
    }

    /// Whether copies for `partner` wait, after one the broker did not
    /// acknowledge: a missing topic would make every try cost a publish
    /// timeout.
    fn failing(&self, partner: &PartnerId) -> bool {
        let Ok(mut failing) = self.partners_failing.lock() else {
            return false;
        };
        match failing.get(partner) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                failing.remove(partner);
                false
            }
            None => false,
        }
    }

    fn pause_partner(&self, partner: &PartnerId) {
        if let Ok(mut failing) = self.partners_failing.lock() {
            failing.insert(partner.clone(), Instant::now() + PARTNER_COPY_RETRY);
        }
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
            if shipment.passed_over(courier) {
                continue;
            }
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
                        partner: candidate.partner_id.as_ref(),
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

/// What a shipment's deadlines call for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Due {
    /// Look for a courier.
    Search,
    /// Fail it: no courier took it within its search window.
    Expire,
    /// Take it back from its courier, who did not pick it up in time.
    Release,
    /// Flag it overdue since `since_ms`.
    FlagOverdue {
        since_ms: i64,
    },
    /// Fail it: not delivered within the give-up time of its pickup.
    GiveUp,
    Nothing,
}

/// What the shipment's state and deadlines call for at `now_ms`.
fn due(shipment: &StoredShipment, settings: &AssignmentConfig, now_ms: i64) -> Due {
    match shipment.state {
        State::Awaiting if now_ms >= shipment.assign_by_ms => Due::Expire,
        State::Awaiting => Due::Search,
        State::Assigned if now_ms >= pickup_due_ms(shipment, settings) => Due::Release,
        State::PickedUp => {
            let picked_up_at = picked_up_at_ms(shipment);
            let overdue_since = picked_up_at + millis(settings.transit_deadline());
            if shipment.overdue_since_ms.is_none() && now_ms >= overdue_since {
                Due::FlagOverdue {
                    since_ms: overdue_since,
                }
            } else if now_ms >= picked_up_at + millis(settings.transit_give_up()) {
                Due::GiveUp
            } else {
                Due::Nothing
            }
        }
        State::Assigned | State::Delivered | State::Failed | State::Withdrawn => Due::Nothing,
    }
}

/// When the shipment next needs a look: its next attempt to find a courier
/// or its next deadline; `None` once it is over.
fn next_due_ms(shipment: &StoredShipment, settings: &AssignmentConfig, now_ms: i64) -> Option<i64> {
    match shipment.state {
        State::Awaiting => {
            Some((now_ms + settings.retry_interval_ms as i64).min(shipment.assign_by_ms))
        }
        State::Assigned => Some(pickup_due_ms(shipment, settings)),
        State::PickedUp => {
            let after_pickup = match shipment.overdue_since_ms {
                None => settings.transit_deadline(),
                Some(_) => settings.transit_give_up(),
            };
            Some(picked_up_at_ms(shipment) + millis(after_pickup))
        }
        State::Delivered | State::Failed | State::Withdrawn => None,
    }
}

/// When the courier's time to pick the shipment up runs out.
fn pickup_due_ms(shipment: &StoredShipment, settings: &AssignmentConfig) -> i64 {
    // Always set while assigned; the last update is the nearest stand-in.
    let assigned_at = shipment.assigned_at_ms.unwrap_or(shipment.updated_at_ms);
    assigned_at + millis(settings.pickup_deadline())
}

fn picked_up_at_ms(shipment: &StoredShipment) -> i64 {
    // Always set once picked up; the last update is the nearest stand-in.
    shipment.picked_up_at_ms.unwrap_or(shipment.updated_at_ms)
}

fn millis(duration: Duration) -> i64 {
    duration.as_millis() as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::sample_shipment;

    const SECOND: i64 = 1_000;

    fn settings() -> AssignmentConfig {
        AssignmentConfig {
            retry_interval_ms: 500,
            deadline_secs: 60,
            pickup_deadline_secs: 100,
            transit_deadline_secs: 1_000,
            transit_give_up_secs: 5_000,
            ..AssignmentConfig::default()
        }
    }

    /// Created at 0 s, waiting until 60 s; once assigned, assigned at 10 s;
    /// once picked up, picked up at 20 s.
    fn shipment(state: State) -> StoredShipment {
        StoredShipment {
            courier_id: (state != State::Awaiting).then(|| Id::parse("cou_1").expect("valid")),
            created_at_ms: 0,
            updated_at_ms: 0,
            assign_by_ms: 60 * SECOND,
            assigned_at_ms: Some(10 * SECOND),
            picked_up_at_ms: Some(20 * SECOND),
            ..sample_shipment(state)
        }
    }

    #[test]
    fn a_waiting_shipment_is_searched_for_until_its_window_closes() {
        let waiting = shipment(State::Awaiting);
        let settings = settings();
        assert_eq!(due(&waiting, &settings, 59_999), Due::Search);
        assert_eq!(due(&waiting, &settings, 60 * SECOND), Due::Expire);
        assert_eq!(next_due_ms(&waiting, &settings, 1_000), Some(1_500));
        assert_eq!(
            next_due_ms(&waiting, &settings, 59_800),
            Some(60 * SECOND),
            "never later than the window's end"
        );
    }

    #[test]
    fn an_assigned_shipment_is_taken_back_at_its_pickup_deadline() {
        let assigned = shipment(State::Assigned);
        let settings = settings();
        let deadline = 110 * SECOND;
        assert_eq!(next_due_ms(&assigned, &settings, 0), Some(deadline));
        assert_eq!(due(&assigned, &settings, deadline - 1), Due::Nothing);
        assert_eq!(due(&assigned, &settings, deadline), Due::Release);
    }

    #[test]
    fn a_picked_up_shipment_is_flagged_overdue_once_then_given_up() {
        let settings = settings();
        let on_the_road = shipment(State::PickedUp);
        let overdue_since = 1_020 * SECOND;
        let give_up_at = 5_020 * SECOND;
        assert_eq!(next_due_ms(&on_the_road, &settings, 0), Some(overdue_since));
        assert_eq!(
            due(&on_the_road, &settings, overdue_since - 1),
            Due::Nothing
        );
        assert_eq!(
            due(&on_the_road, &settings, overdue_since),
            Due::FlagOverdue {
                since_ms: overdue_since
            }
        );
        // Even when both have passed, overdue comes first.
        assert_eq!(
            due(&on_the_road, &settings, give_up_at),
            Due::FlagOverdue {
                since_ms: overdue_since
            }
        );

        let flagged = StoredShipment {
            overdue_since_ms: Some(overdue_since),
            ..on_the_road
        };
        assert_eq!(next_due_ms(&flagged, &settings, 0), Some(give_up_at));
        assert_eq!(due(&flagged, &settings, give_up_at - 1), Due::Nothing);
        assert_eq!(due(&flagged, &settings, give_up_at), Due::GiveUp);
    }

    #[test]
    fn finished_shipments_need_nothing_more() {
        let settings = settings();
        for state in [State::Delivered, State::Failed, State::Withdrawn] {
            let over = shipment(state);
            assert_eq!(due(&over, &settings, i64::MAX / 2), Due::Nothing);
            assert_eq!(next_due_ms(&over, &settings, 0), None);
        }
    }
}
