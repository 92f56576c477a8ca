//! A token issuer for tests: an Ed25519 key, its JWKS document in a file a
//! service can be pointed at (`auth.jwks_file`), and tokens for any role and
//! subject, as an OIDC provider would issue them.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use harvest_kit::auth::{AuthConfig, Role};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::{Ed25519KeyPair, KeyPair};

pub const ISSUER: &str = "https://id.harvest.test";
pub const AUDIENCE: &str = "harvest";
const KEY_ID: &str = "test-key-1";

pub struct Issuer {
    key: EncodingKey,
    jwks_file: PathBuf,
}

impl Issuer {
    /// A new key, its JWKS document written under `dir`.
    pub fn new(dir: &Path) -> anyhow::Result<Issuer> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| anyhow::anyhow!("could not make an Ed25519 key"))?;
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .map_err(|_| anyhow::anyhow!("could not read the Ed25519 key"))?;
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
        let jwks = serde_json::json!({"keys": [{
            "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": KEY_ID, "x": x,
        }]});
        std::fs::create_dir_all(dir)?;
        let jwks_file = dir.join("jwks.json");
        std::fs::write(&jwks_file, jwks.to_string())?;
        Ok(Issuer {
            key: EncodingKey::from_ed_der(pkcs8.as_ref()),
            jwks_file,
        })
    }

    /// The settings that make a service trust this issuer.
    pub fn config(&self) -> AuthConfig {
        AuthConfig {
            mode: "jwt".to_owned(),
            jwks_file: Some(self.jwks_file.clone()),
            issuer: ISSUER.to_owned(),
            audience: AUDIENCE.to_owned(),
        }
    }

    /// A token for `subject` in `role`, valid for an hour.
    pub fn token(&self, role: Role, subject: &str) -> String {
        self.token_with(role, subject, 3_600)
    }

    /// A token that expires `valid_for_secs` from now (negative: expired).
    pub fn token_with(&self, role: Role, subject: &str, valid_for_secs: i64) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs() as i64);
        let claims = serde_json::json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": subject, "role": role.as_str(),
            "iat": now, "exp": now + valid_for_secs,
        });
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(KEY_ID.to_owned());
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap_or_default()
    }
}
