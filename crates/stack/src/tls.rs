//! Certificates for a stack whose gRPC ports speak TLS: a certificate
//! authority of the stack's own, made when it starts, a server certificate
//! for the loopback address signed by it, and a client certificate for
//! mutual TLS.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// The files of a stack's TLS, all PEM.
#[derive(Clone, Debug)]
pub struct LocalTls {
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_cert_file: PathBuf,
    pub client_key_file: PathBuf,
}

impl LocalTls {
    /// Makes a new authority and its certificates in `dir`.
    pub fn make(dir: &Path) -> anyhow::Result<LocalTls> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "Harvest local stack CA");
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca, ca_key);

        let mut server =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
        server
            .distinguished_name
            .push(DnType::CommonName, "Harvest services");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate()?;
        let server_cert = server.signed_by(&server_key, &issuer)?;

        let mut client = CertificateParams::new(Vec::<String>::new())?;
        client
            .distinguished_name
            .push(DnType::CommonName, "Harvest local client");
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_key = KeyPair::generate()?;
        let client_cert = client.signed_by(&client_key, &issuer)?;

        let tls = LocalTls {
            ca_file: dir.join("ca.pem"),
            cert_file: dir.join("server.pem"),
            key_file: dir.join("server-key.pem"),
            client_cert_file: dir.join("client.pem"),
            client_key_file: dir.join("client-key.pem"),
        };
        for (file, pem) in [
            (&tls.ca_file, ca_cert.pem()),
            (&tls.cert_file, server_cert.pem()),
            (&tls.key_file, server_key.serialize_pem()),
            (&tls.client_cert_file, client_cert.pem()),
            (&tls.client_key_file, client_key.serialize_pem()),
        ] {
            std::fs::write(file, pem).with_context(|| format!("writing {}", file.display()))?;
        }
        Ok(tls)
    }

    /// A client's TLS for the stack's services: trusting its authority, and
    /// presenting the client certificate when `mutual`.
    pub fn client(&self, mutual: bool) -> anyhow::Result<ClientTlsConfig> {
        let read = |file: &Path| {
            std::fs::read(file).with_context(|| format!("reading {}", file.display()))
        };
        let mut config =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(&self.ca_file)?));
        if mutual {
            config = config.identity(Identity::from_pem(
                read(&self.client_cert_file)?,
                read(&self.client_key_file)?,
            ));
        }
        Ok(config)
    }
}
