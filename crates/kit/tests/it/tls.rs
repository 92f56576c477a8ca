//! Redis over TLS, as an ACL user: a `rediss://` URL naming the user and
//! its password, trusting the CA of the server's certificate.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use harvest_kit::store::connect;
use harvest_kit::{RedisConfig, Secret};
use harvest_stack::tls::LocalTls;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

/// Debian's redis-server with only a TLS port, the default user off and
/// one user `orders` with a password.
fn start(tls: &LocalTls, port: u16) -> Server {
    let path = |file: &std::path::Path| file.display().to_string();
    let child = Command::new("redis-server")
        .args(["--port", "0", "--bind", "127.0.0.1"])
        .args(["--tls-port", &port.to_string()])
        .args(["--tls-cert-file", &path(&tls.cert_file)])
        .args(["--tls-key-file", &path(&tls.key_file)])
        .args(["--tls-ca-cert-file", &path(&tls.ca_file)])
        .args(["--tls-auth-clients", "no"])
        .args(["--save", "", "--appendonly", "no"])
        .args(["--user", "default", "off"])
        .args(["--user", "orders", "on", ">s3cret", "~*", "&*", "+@all"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server starts");
    Server(child)
}

fn config(url: String, ca: Option<&LocalTls>) -> RedisConfig {
    RedisConfig {
        url: Secret::new(url),
        tls_ca_file: ca.map(|tls| tls.ca_file.clone()),
        ..RedisConfig::default()
    }
}

#[tokio::test]
async fn the_kit_reaches_redis_over_tls_as_its_acl_user_and_nothing_else_does() {
    let dir = std::env::temp_dir().join(format!(
        "harvest-redis-tls-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos())
    ));
    let tls = LocalTls::make(&dir).expect("certificates");
    let port = free_port();
    let _server = start(&tls, port);
    let good = config(
        format!("rediss://orders:s3cret@127.0.0.1:{port}"),
        Some(&tls),
    );
    assert_eq!(good.validate(), Ok(()));

    // The server takes a moment to listen.
    let mut redis = None;
    for _ in 0..50 {
        if let Ok(connected) = connect(&good).await {
            redis = Some(connected);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut redis = redis.expect("connected over TLS as orders");
    let _: () = redis::cmd("SET")
        .arg("tls:key")
        .arg("carried")
        .query_async(&mut redis)
        .await
        .expect("set");
    let read: String = redis::cmd("GET")
        .arg("tls:key")
        .query_async(&mut redis)
        .await
        .expect("get");
    assert_eq!(read, "carried");

    for (what, refused) in [
        (
            "a wrong password",
            config(
                format!("rediss://orders:guess@127.0.0.1:{port}"),
                Some(&tls),
            ),
        ),
        (
            "the default user",
            config(format!("rediss://127.0.0.1:{port}"), Some(&tls)),
        ),
        (
            "plaintext",
            config(format!("redis://orders:s3cret@127.0.0.1:{port}"), None),
        ),
        (
            "a client trusting only the system's roots",
            config(format!("rediss://orders:s3cret@127.0.0.1:{port}"), None),
        ),
    ] {
        let answer = match connect(&refused).await {
            Err(error) => Err(error),
            // A lazy connection fails on its first command instead.
            Ok(mut redis) => redis::cmd("GET")
                .arg("tls:key")
                .query_async::<Option<String>>(&mut redis)
                .await
                .map_err(Into::into),
        };
        assert!(answer.is_err(), "{what} got through: {answer:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
