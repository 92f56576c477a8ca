//! Waking the tasks that wait on one key (an order's watchers, a courier's
//! assignment streams), and only those.
//!
//! A task registers its key's bell while it waits on it; ringing a key wakes
//! that key's tasks alone, so the cost of a ring does not grow with the
//! number of tasks registered. A ring is never lost to a task that was busy
//! when it came: the task sees it the next time it waits. A key is forgotten
//! with its last bell.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// The bells of the keys some task of this process waits on.
#[derive(Clone)]
pub struct Bells<K> {
    keys: Arc<Mutex<HashMap<K, watch::Sender<u64>>>>,
}

/// One task's bell. Dropping it unregisters the task.
pub struct Bell<K: Eq + Hash> {
    receiver: watch::Receiver<u64>,
    key: K,
    bells: Bells<K>,
}

impl<K> Default for Bells<K> {
    fn default() -> Self {
        Bells {
            keys: Arc::default(),
        }
    }
}

impl<K: Eq + Hash + Clone> Bells<K> {
    /// Rings `key`'s bell; nothing happens when no task waits on it here.
    pub fn ring<Q>(&self, key: &Q)
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        if let Ok(keys) = self.keys.lock()
            && let Some(sender) = keys.get(key)
        {
            sender.send_modify(|rings| *rings = rings.wrapping_add(1));
        }
    }

    /// Rings every bell (after a reconnection, say, when rings may have been
    /// missed).
    pub fn ring_all(&self) {
        if let Ok(keys) = self.keys.lock() {
            for sender in keys.values() {
                sender.send_modify(|rings| *rings = rings.wrapping_add(1));
            }
        }
    }

    pub fn listen(&self, key: K) -> Bell<K> {
        let receiver = match self.keys.lock() {
            Ok(mut keys) => keys
                .entry(key.clone())
                .or_insert_with(|| watch::channel(0).0)
                .subscribe(),
            // A poisoned registry: a bell that never rings; the task still
            // has its own timer.
            Err(_) => watch::channel(0).1,
        };
        Bell {
            receiver,
            key,
            bells: self.clone(),
        }
    }

    /// How many keys some task waits on.
    pub fn listened(&self) -> usize {
        self.keys.lock().map(|keys| keys.len()).unwrap_or(0)
    }
}

impl<K: Eq + Hash> Bell<K> {
    /// Waits for the next ring. A bell that can no longer ring never returns.
    pub async fn rung(&mut self) {
        if self.receiver.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl<K: Eq + Hash> Drop for Bell<K> {
    fn drop(&mut self) {
        let Ok(mut keys) = self.bells.keys.lock() else {
            return;
        };
        // This receiver still counts while it is being dropped.
        if keys
            .get(&self.key)
            .is_some_and(|sender| sender.receiver_count() <= 1)
        {
            keys.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_ring_wakes_only_its_keys_tasks_even_when_they_were_busy() {
        let bells = Bells::default();
        let mut first_of_a = bells.listen("a".to_owned());
        let mut second_of_a = bells.listen("a".to_owned());
        let mut of_b = bells.listen("b".to_owned());

        // Rung while nobody waits: each task of `a` sees it when it waits.
        bells.ring("a");
        let quick = Duration::from_millis(200);
        assert!(tokio::time::timeout(quick, first_of_a.rung()).await.is_ok());
        assert!(
            tokio::time::timeout(quick, second_of_a.rung())
                .await
                .is_ok()
        );
        assert!(
            tokio::time::timeout(quick, of_b.rung()).await.is_err(),
            "another key's task stays asleep"
        );
        // Seen once: no second wake-up for the same ring.
        assert!(
            tokio::time::timeout(quick, first_of_a.rung())
                .await
                .is_err()
        );

        bells.ring_all();
        assert!(tokio::time::timeout(quick, of_b.rung()).await.is_ok());
    }

    #[test]
    fn a_keys_last_bell_dropped_forgets_the_key() {
        let bells = Bells::default();
        let first = bells.listen("a".to_owned());
        let second = bells.listen("a".to_owned());
        drop(first);
        assert_eq!(bells.listened(), 1, "one task still waits on it");
        drop(second);
        assert_eq!(bells.listened(), 0);
        bells.ring("a");
    }
}
