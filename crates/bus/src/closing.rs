//! Closing a Kafka consumer that belongs to a group leaves the group, and the
//! client waits for the broker to answer: a session timeout when the broker
//! is gone, and in some states of the group for ever. [`CloseOffThread`] keeps
//! that wait off the async workers: whoever drops the last handle hands the
//! client to a thread of its own, so a service (or a test) whose broker died
//! still stops.

use std::ops::Deref;

use tokio::sync::oneshot;

/// Owns a client and closes it on its own thread when dropped.
pub struct CloseOffThread<T: Send + 'static> {
    client: Option<T>,
    closed: Option<oneshot::Sender<()>>,
}

impl<T: Send + 'static> CloseOffThread<T> {
    pub fn new(client: T) -> Self {
        CloseOffThread {
            client: Some(client),
            closed: None,
        }
    }

    /// Also returns a receiver that resolves once the client is closed, for
    /// an orderly stop that waits a bounded time for the group to be left.
    pub fn with_notice(client: T) -> (Self, oneshot::Receiver<()>) {
        let (notice, closed) = oneshot::channel();
        let owner = CloseOffThread {
            client: Some(client),
            closed: Some(notice),
        };
        (owner, closed)
    }
}

impl<T: Send + 'static> Deref for CloseOffThread<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.client.as_ref().expect("present until dropped")
    }
}

impl<T: Send + 'static> Drop for CloseOffThread<T> {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        let notice = self.closed.take();
        let spawned = std::thread::Builder::new()
            .name("kafka-close".to_owned())
            .spawn(move || {
                drop(client);
                if let Some(notice) = notice {
                    let _ = notice.send(());
                }
            });
        if let Err(error) = spawned {
            // The closure, and with it the client, was dropped right here.
            tracing::warn!(%error, "no thread to close a Kafka client on; closed in place");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    /// Stands for a client whose close blocks until `release` is sent.
    struct SlowToClose(mpsc::Receiver<()>);

    impl Drop for SlowToClose {
        fn drop(&mut self) {
            let _ = self.0.recv_timeout(Duration::from_secs(30));
        }
    }

    #[tokio::test]
    async fn dropping_returns_at_once_and_the_notice_comes_when_closed() {
        let (release, blocked) = mpsc::channel();
        let (owner, mut closed) = CloseOffThread::with_notice(SlowToClose(blocked));
        drop(owner);
        // Still closing: the drop above did not wait for it.
        assert!(closed.try_recv().is_err());
        release.send(()).expect("the closing thread waits");
        tokio::time::timeout(Duration::from_secs(10), closed)
            .await
            .expect("closed in time")
            .expect("notice sent");
    }
}
