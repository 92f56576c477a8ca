//! The bus against a broker that, as production brokers do, takes clients
//! only over TLS, as SCRAM users on one listener and by their certificates
//! (mutual TLS) on another: topics are made, events published and handled
//! with both SCRAM mechanisms and with a client certificate; a wrong
//! password, an authority the client does not trust, a client without a
//! certificate or with one from another authority, or a client without TLS
//! get nowhere, and the error says why when the client library does.

use harvest_domain::Secret;
use harvest_testkit::{LocalTls, SecureListener};

use super::*;

const USER: &str = "harvest-orders";
const PASSWORD: &str = "Orders0nlyKnowThis";

/// How the services reach a TLS listener at `bootstrap`, trusting `ca_file`
/// for the broker's certificate, as their settings would say.
fn over_tls(bootstrap: &str, ca_file: &std::path::Path) -> BusConfig {
    BusConfig {
        brokers: bootstrap.to_owned(),
        security_protocol: "ssl".to_owned(),
        ssl_ca_file: Some(ca_file.to_path_buf()),
        topic_prefix: format!("{}.", unique_name()),
        partitions: 2,
        session_timeout_ms: 6_000,
        handler_backoff_ms: 10,
        ..BusConfig::default()
    }
}

/// The secure listener's settings: TLS, as the SCRAM user.
fn secure_config(
    bootstrap: &str,
    mechanism: &str,
    password: &str,
    ca_file: &std::path::Path,
) -> BusConfig {
    let config = BusConfig {
        security_protocol: "sasl_ssl".to_owned(),
        sasl_mechanism: mechanism.to_owned(),
        sasl_username: USER.to_owned(),
        sasl_password: Secret::new(password.to_owned()),
        ..over_tls(bootstrap, ca_file)
    };
    config.validate().expect("valid settings");
    config
}

/// The mutual-TLS listener's settings: TLS, with `client`'s certificate
/// (none for `None`).
fn mutual_tls_config(
    bootstrap: &str,
    ca_file: &std::path::Path,
    client: Option<&LocalTls>,
) -> BusConfig {
    let config = BusConfig {
        ssl_cert_file: client.map(|tls| tls.client_cert_file.clone()),
        ssl_key_file: client.map(|tls| tls.client_key_file.clone()),
        ..over_tls(bootstrap, ca_file)
    };
    config.validate().expect("valid settings");
    config
}

#[tokio::test]
async fn the_bus_works_over_tls_as_a_scram_user_or_by_certificate_and_nobody_else_gets_in() {
    let dir = std::env::temp_dir().join(format!("harvest-secure-bus-{}", unique_name()));
    let tls = LocalTls::make(&dir.join("broker")).expect("the broker's certificates");
    let listener = SecureListener {
        cert_file: tls.cert_file.clone(),
        key_file: tls.key_file.clone(),
        user: USER.to_owned(),
        password: PASSWORD.to_owned(),
        client_ca_file: Some(tls.ca_file.clone()),
    };
    let broker = tokio::task::spawn_blocking(move || Broker::secure(listener))
        .await
        .expect("the broker's start ran")
        .map(Arc::new)
        .expect("a broker with a TLS and SCRAM listener starts");
    let secure = broker
        .secure_bootstrap()
        .expect("the broker has a secure listener");
    let mutual = broker
        .mutual_tls_bootstrap()
        .expect("the broker has a mutual-TLS listener");
    let regions = Regions::try_from(vec!["east".to_owned()]).expect("valid");

    let admitted = [
        (
            "SCRAM-SHA-512",
            secure_config(&secure, "SCRAM-SHA-512", PASSWORD, &tls.ca_file),
        ),
        (
            "SCRAM-SHA-256",
            secure_config(&secure, "SCRAM-SHA-256", PASSWORD, &tls.ca_file),
        ),
        (
            "a client certificate",
            mutual_tls_config(&mutual, &tls.ca_file, Some(&tls)),
        ),
    ];
    for (how, config) in admitted {
        let topology = Topology::new(&config, regions.clone());
        let created = harvest_bus::admin::ensure_topics(&config, &topology.all_topics())
            .await
            .unwrap_or_else(|error| panic!("{how}: topics made over TLS: {error:#}"));
        assert_eq!(
            created.len(),
            topology.all_topics().len(),
            "{how}: every topic is new"
        );

        let bus = Bus::over(broker.clone(), config).await;
        let handler = Arc::new(Flaky::default());
        let shutdown = CancellationToken::new();
        let consuming = bus.consume(handler.clone(), shutdown.clone());
        bus.deliver_to(&handler).await;
        stop_in_time(&shutdown, consuming).await;
    }

    // Nobody else gets in: each asks for the topics.
    let stranger = LocalTls::make(&dir.join("stranger")).expect("another authority");
    let plaintext = BusConfig {
        brokers: secure.clone(),
        topic_prefix: format!("{}.", unique_name()),
        ..BusConfig::default()
    };
    // Each is refused, and told why where the client library says why.
    let refused = [
        (
            "a client without a certificate",
            mutual_tls_config(&mutual, &tls.ca_file, None),
            Some("bad certificate"),
        ),
        (
            "a client certificate from an authority the broker does not trust",
            mutual_tls_config(&mutual, &tls.ca_file, Some(&stranger)),
            Some("certificate unknown"),
        ),
        (
            "a wrong password",
            secure_config(&secure, "SCRAM-SHA-512", "NotTheP4ssword", &tls.ca_file),
            Some("SASL authentication error"),
        ),
        (
            "a broker certificate from an authority the client does not trust",
            secure_config(&secure, "SCRAM-SHA-512", PASSWORD, &stranger.ca_file),
            Some("certificate verify failed"),
        ),
        ("a client without TLS or a user", plaintext, None),
    ];
    // Each waits out the metadata timeout, so they ask at once.
    let asked = futures::future::join_all(refused.iter().map(|(_, config, _)| async {
        let topology = Topology::new(config, regions.clone());
        harvest_bus::admin::ensure_topics(config, &topology.all_topics()).await
    }))
    .await;
    for ((who, config, why), outcome) in refused.into_iter().zip(asked) {
        let error = outcome.err().unwrap_or_else(|| panic!("{who} made topics"));
        let said = error.to_string();
        assert!(
            said.starts_with(&format!("could not reach the broker at {}", config.brokers)),
            "{who}: {said}"
        );
        if let Some(why) = why {
            assert!(said.contains(why), "{who}: {said} does not say {why:?}");
        }
    }
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}
