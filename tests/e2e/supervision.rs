//! Supervision, as `make run` and `make demo` do it: a service that dies is
//! reported at once and started again on its own ports.

use std::time::{Duration, Instant};

use harvest_proto::payments::v1::GetPaymentRequest;
use harvest_stack::{ServiceKind, Supervision};
use tonic::Code;

use crate::helpers::{System, WAIT};

#[tokio::test]
async fn a_killed_service_is_reported_at_once_and_serves_again() {
    let mut system = System::start().await;
    let kind = ServiceKind::Payments;
    let first_pid = system.stack.pids()[&kind];
    // From outside the stack, as a crash or the OOM killer would.
    assert!(harvest_stack::servers::signal_process(
        first_pid,
        harvest_stack::servers::Signal::KILL
    ));
    let killed_at = Instant::now();

    let mut events: Vec<(Duration, Supervision)> = Vec::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    let restarted = |events: &[(Duration, Supervision)]| {
        events
            .iter()
            .any(|(_, event)| matches!(event, Supervision::Restarted { .. }))
    };
    while !restarted(&events) {
        assert!(
            killed_at.elapsed() < WAIT,
            "{kind} was not restarted in time; seen: {events:?}"
        );
        ticker.tick().await;
        system
            .stack
            .supervise(|event| events.push((killed_at.elapsed(), event.clone())))
            .await;
    }

    let [(reported_after, exited), (_, restart)] = events.as_slice() else {
        panic!("expected an exit, then a restart: {events:?}");
    };
    assert!(
        *reported_after < Duration::from_secs(1),
        "reported {reported_after:?} after the kill"
    );
    let Supervision::Exited {
        kind: exited_kind,
        status,
        log,
        restart_in,
    } = exited
    else {
        panic!("expected an exit first: {exited:?}");
    };
    assert_eq!(*exited_kind, kind);
    assert!(status.contains("SIGKILL"), "{status}");
    assert_eq!(log, &system.stack.log_file(kind));
    assert_eq!(*restart_in, Duration::from_secs(1));
    assert!(exited.to_string().contains(&log.display().to_string()));
    assert_eq!(*restart, Supervision::Restarted { kind, restarts: 1 });
    assert_eq!(system.stack.restarts().get(&kind), Some(&1));
    assert_ne!(system.stack.pids()[&kind], first_pid);

    // Serving again where it was: the client made before the crash answers
    // (once it has noticed its old connection is gone).
    let answered = harvest_testkit::eventually(WAIT, || {
        let mut payments = system.clients.payments.clone();
        async move {
            let request = GetPaymentRequest {
                order_id: "ord_nobody".to_owned(),
            };
            match payments.get_payment(request).await {
                Err(status) if status.code() == Code::NotFound => Some(()),
                _ => None,
            }
        }
    })
    .await;
    assert!(answered.is_some(), "{kind} answers again");
}
