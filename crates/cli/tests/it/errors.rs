use crate::helpers::{Run, harvest};

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
    listener.local_addr().expect("address").port()
}

#[tokio::test]
async fn an_unreachable_service_gets_a_hint() {
    let orders = format!("http://127.0.0.1:{}", closed_port());
    let run = Run::of(harvest(&["order", "show", "ord_1", "--orders", &orders])).await;
    let error = run.failed(1);
    assert!(
        error.contains(&format!("cannot reach the orders service at {orders}")),
        "{error}"
    );
    assert!(
        error.contains("is Harvest running? try `make run`"),
        "{error}"
    );

    let catalog = format!("http://127.0.0.1:{}", closed_port());
    let mut command = harvest(&["products", "--json"]);
    command.env("HARVEST_CATALOG_URL", &catalog);
    let run = Run::of(command).await;
    let error = run.failed(1);
    assert!(
        error.contains(&format!("the catalog service at {catalog}")),
        "{error}"
    );
    assert!(error.contains("HARVEST_CATALOG_URL"), "{error}");
}

#[tokio::test]
async fn usage_errors_exit_2_before_calling_anything() {
    let cases: [(&[&str], &str); 4] = [
        (&["products", "--category", "fruits"], "--category"),
        (
            &[
                "payment", "refund", "ord_1", "--reason", "late", "--amount", "12.5",
            ],
            "--amount",
        ),
        (
            &["courier", "status", "c-1", "--lat", "35", "--lon", "109"],
            "--available",
        ),
        (
            &["order", "show", "ord_1", "--orders", "localhost:50052"],
            "--orders",
        ),
    ];
    for (args, named) in cases {
        let run = Run::of(harvest(args)).await;
        let error = run.failed(2);
        assert!(error.contains(named), "{args:?}: {error}");
    }
}

/// `harvest dlq` reaches a secured broker with the `--kafka-*` flags (or
/// their HARVEST_BUS__* variables); settings that cannot work are a usage
/// error, found before any broker is called.
#[tokio::test]
async fn dlq_kafka_security_settings_that_cannot_work_exit_2() {
    let at = ["--service", "catalog", "--region", "east"];
    let cases: [(&[&str], &str); 3] = [
        (
            &["--kafka-security-protocol", "sasl_ssl"],
            "HARVEST_BUS__SASL_PASSWORD",
        ),
        (
            &["--kafka-security-protocol", "tls"],
            "--kafka-security-protocol",
        ),
        (
            &["--kafka-ca-file", "/etc/ssl/certs/ca-certificates.crt"],
            "ssl_*",
        ),
    ];
    for (flags, named) in cases {
        let mut args = vec!["dlq", "list"];
        args.extend_from_slice(&at);
        args.extend_from_slice(flags);
        let mut command = harvest(&args);
        command
            .env_remove("HARVEST_BUS__SASL_PASSWORD")
            .env("HARVEST_BUS__BROKERS", "127.0.0.1:9");
        let run = Run::of(command).await;
        let error = run.failed(2);
        assert!(error.contains(named), "{flags:?}: {error}");
    }
}
