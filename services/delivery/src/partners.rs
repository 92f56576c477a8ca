//! Courier partners' topics: each partner reads the delivery events of the
//! shipments its couriers carry on a topic of its own (see
//! `docs/courier-events.md`), which exists before the partner's first courier
//! is registered.

use std::collections::HashSet;
use std::sync::Mutex;

use harvest_bus::admin::AdminError;
use harvest_bus::{BusConfig, PartnerId, Topology};

pub struct PartnerTopics {
    /// Whether this service creates them.
    create: bool,
    bus: BusConfig,
    topology: Topology,
    /// Partners whose topic this replica has seen to exist.
    known: Mutex<HashSet<PartnerId>>,
}

impl PartnerTopics {
    pub fn new(create: bool, bus: BusConfig, topology: Topology) -> Self {
        PartnerTopics {
            create,
            bus,
            topology,
            known: Mutex::default(),
        }
    }

    /// Creates the partner's topic if it is missing, once per replica. With
    /// `partner_topics.create` off the deployment creates partners' topics
    /// itself (deploy/ does, for the partners it lists).
    pub async fn ensure(&self, partner: &PartnerId) -> Result<(), AdminError> {
        if !self.create || self.is_known(partner) {
            return Ok(());
        }
        let spec = self.topology.partner_topic_spec(partner);
        let created = harvest_bus::admin::ensure_topics(&self.bus, &[spec]).await?;
        if !created.is_empty() {
            tracing::info!(partner_id = %partner, topic = %created.join(","), "courier partner's topic created");
        }
        if let Ok(mut known) = self.known.lock() {
            known.insert(partner.clone());
        }
        Ok(())
    }

    fn is_known(&self, partner: &PartnerId) -> bool {
        self.known.lock().is_ok_and(|known| known.contains(partner))
    }
}
