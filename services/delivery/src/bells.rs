//! Waking a courier's assignment streams, and only that courier's.
//!
//! A stream registers its courier's bell while it is open; a new assignment
//! rings the bell of its courier alone, so the cost of an assignment does
//! not grow with the number of couriers connected. A ring is never lost to a
//! stream that was busy when it came: the stream sees it the next time it
//! waits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use harvest_domain::Id;
use tokio::sync::watch;

/// The bells of the couriers with an open assignment stream on this replica.
#[derive(Clone, Default)]
pub struct Bells {
    couriers: Arc<Mutex<HashMap<Id, watch::Sender<u64>>>>,
}

/// One stream's bell. Dropping it unregisters the stream.
pub struct Bell {
    receiver: watch::Receiver<u64>,
    courier_id: Id,
    bells: Bells,
}

impl Bells {
    /// Rings `courier_id`'s bell; nothing happens when no stream of it is
    /// open here.
    pub fn ring(&self, courier_id: &Id) {
        let Ok(couriers) = self.couriers.lock() else {
            return;
        };
        if let Some(sender) = couriers.get(courier_id) {
            sender.send_modify(|rings| *rings = rings.wrapping_add(1));
        }
    }

    pub fn listen(&self, courier_id: &Id) -> Bell {
        let receiver = match self.couriers.lock() {
            Ok(mut couriers) => couriers
                .entry(courier_id.clone())
                .or_insert_with(|| watch::channel(0).0)
                .subscribe(),
            // A poisoned registry: a bell that never rings; the stream
            // still polls.
            Err(_) => watch::channel(0).1,
        };
        Bell {
            receiver,
            courier_id: courier_id.clone(),
            bells: self.clone(),
        }
    }

    #[cfg(test)]
    fn listened(&self) -> usize {
        self.couriers.lock().map(|c| c.len()).unwrap_or(0)
    }
}

impl Bell {
    /// Waits for the next ring. Never returns once the registry is gone,
    /// which cannot happen while this bell holds it.
    pub async fn rung(&mut self) {
        if self.receiver.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Bell {
    fn drop(&mut self) {
        let Ok(mut couriers) = self.bells.couriers.lock() else {
            return;
        };
        // This receiver still counts while it is being dropped.
        if couriers
            .get(&self.courier_id)
            .is_some_and(|sender| sender.receiver_count() <= 1)
        {
            couriers.remove(&self.courier_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn courier(name: &str) -> Id {
        harvest_domain::deterministic_id("cou", &[name])
    }

    #[tokio::test]
    async fn a_ring_wakes_only_its_couriers_streams_even_when_they_were_busy() {
        let bells = Bells::default();
        let (a, b) = (courier("a"), courier("b"));
        let mut first_of_a = bells.listen(&a);
        let mut second_of_a = bells.listen(&a);
        let mut of_b = bells.listen(&b);

        // Rung while nobody waits: each stream of `a` sees it when it waits.
        bells.ring(&a);
        let quick = Duration::from_millis(200);
        assert!(tokio::time::timeout(quick, first_of_a.rung()).await.is_ok());
        assert!(
            tokio::time::timeout(quick, second_of_a.rung())
                .await
                .is_ok()
        );
        assert!(
            tokio::time::timeout(quick, of_b.rung()).await.is_err(),
            "another courier's stream stays asleep"
        );
        // Seen once: no second wake-up for the same ring.
        assert!(
            tokio::time::timeout(quick, first_of_a.rung())
                .await
                .is_err()
        );
    }

    #[test]
    fn closing_a_couriers_last_stream_forgets_its_bell() {
        let bells = Bells::default();
        let a = courier("a");
        let first = bells.listen(&a);
        let second = bells.listen(&a);
        drop(first);
        assert_eq!(bells.listened(), 1, "one stream of it is still open");
        drop(second);
        assert_eq!(bells.listened(), 0);
        bells.ring(&a);
    }
}
