//! A token issuer of Harvest's own, for the local stack, its tools and
//! tests: an Ed25519 signing key kept in a directory, the JWKS document of its
//! public half beside it (for `auth.jwks_file`), and tokens for any role and
//! subject, shaped as an OIDC provider issues them. A deployment trusts its
//! own identity provider instead.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::{Ed25519KeyPair, KeyPair};

use crate::auth::{AuthConfig, Role};

/// The `iss` of the tokens of a local stack's issuer (`harvest-stack`).
pub const LOCAL_ISSUER: &str = "harvest-stack";
/// The audience Harvest's services expect by default.
pub const AUDIENCE: &str = "harvest";
/// The file of the signing key (PKCS#8), in the issuer's directory.
pub const KEY_FILE: &str = "signing-key.p8";
/// The file of the JWKS document, in the issuer's directory.
pub const JWKS_FILE: &str = "jwks.json";

#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: not an Ed25519 signing key (PKCS#8)")]
    BadKey(PathBuf),
    #[error("could not make an Ed25519 key")]
    NoRandom,
}

pub struct Issuer {
    name: String,
    key_id: String,
    key: EncodingKey,
    jwks_file: PathBuf,
}

impl Issuer {
    /// The issuer `name` kept in `dir`: its key read from there, or made
    /// and written there (readable by the owner only) when there is none yet.
    /// The JWKS document is written each time.
    pub fn in_dir(dir: &Path, name: &str) -> Result<Issuer, IssuerError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| IssuerError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let key_file = dir.join(KEY_FILE);
        let pkcs8 = match std::fs::read(&key_file) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let made = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
                    .map_err(|_| IssuerError::NoRandom)?;
                write_private(&key_file, made.as_ref()).map_err(io(&key_file))?;
                made.as_ref().to_vec()
            }
            Err(error) => return Err(io(&key_file)(error)),
        };
        Self::from_pkcs8(dir, name, &pkcs8, &key_file)
    }

    /// The issuer `name` whose key is in `dir` already.
    pub fn open(dir: &Path, name: &str) -> Result<Issuer, IssuerError> {
        let key_file = dir.join(KEY_FILE);
        let pkcs8 = std::fs::read(&key_file).map_err(|source| IssuerError::Io {
            path: key_file.clone(),
            source,
        })?;
        Self::from_pkcs8(dir, name, &pkcs8, &key_file)
    }

    fn from_pkcs8(
        dir: &Path,
        name: &str,
        pkcs8: &[u8],
        key_file: &Path,
    ) -> Result<Issuer, IssuerError> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8)
            .map_err(|_| IssuerError::BadKey(key_file.to_path_buf()))?;
        let public = pair.public_key().as_ref();
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(public);
        // Named after the key, so that a new key is never taken for the old.
        let key_id = format!("harvest-{}", &x[..12]);
        let jwks = serde_json::json!({"keys": [{
            "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": key_id, "x": x,
        }]});
        let jwks_file = dir.join(JWKS_FILE);
        std::fs::write(&jwks_file, jwks.to_string()).map_err(|source| IssuerError::Io {
            path: jwks_file.clone(),
            source,
        })?;
        Ok(Issuer {
            name: name.to_owned(),
            key_id,
            key: EncodingKey::from_ed_der(pkcs8),
            jwks_file,
        })
    }

    /// The settings that make a service trust this issuer.
    pub fn config(&self) -> AuthConfig {
        AuthConfig {
            mode: "jwt".to_owned(),
            jwks_file: Some(self.jwks_file.clone()),
            issuer: self.name.clone(),
            audience: AUDIENCE.to_owned(),
            ..AuthConfig::default()
        }
    }

    pub fn jwks_file(&self) -> &Path {
        &self.jwks_file
    }

    pub fn name(&self) -> &str {
        &self.name
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
            "iss": self.name, "aud": AUDIENCE, "sub": subject, "role": role.as_str(),
            "iat": now, "exp": now + valid_for_secs,
        });
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.key_id.clone());
        // Signing with a key that parsed as Ed25519 does not fail.
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap_or_default()
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    options.open(path)?.write_all(bytes)
}

/// Who a request acts as: [`Minter`] gives it a token for them.
#[derive(Clone, Debug)]
pub struct ActAs {
    pub role: Role,
    pub subject: String,
}

/// `message` as a request of `subject` in `role`, for a client with a
/// [`Minter`].
pub fn act_as<T>(role: Role, subject: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.extensions_mut().insert(ActAs {
        role,
        subject: subject.to_owned(),
    });
    request
}

/// A client interceptor that signs each request for whoever it acts as
/// ([`act_as`]; the operator [`OPERATOR`] when it names no one), with
/// the issuer's key; with no issuer (authentication off) it adds nothing.
#[derive(Clone, Default)]
pub struct Minter(Option<Arc<Issuer>>);

impl Minter {
    pub fn new(issuer: Option<Arc<Issuer>>) -> Minter {
        Minter(issuer)
    }
}

impl tonic::service::Interceptor for Minter {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let Some(issuer) = &self.0 else {
            return Ok(request);
        };
        let token = match request.extensions().get::<ActAs>() {
            Some(who) => issuer.token(who.role, &who.subject),
            None => issuer.token(Role::Operator, OPERATOR),
        };
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| tonic::Status::internal("a token that is no header value"))?;
        request.metadata_mut().insert("authorization", value);
        Ok(request)
    }
}

/// The subject of the operator tokens Harvest's own tools use.
pub const OPERATOR: &str = "harvest-operator";

/// `message` as a request carrying `token` (`authorization: Bearer …`); as
/// it is with no token.
pub fn bearer<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(value) = token.and_then(|token| format!("Bearer {token}").parse().ok()) {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Identity, Verifier};

    #[test]
    fn a_kept_key_signs_tokens_its_jwks_verifies_after_a_reopen() {
        let dir = std::env::temp_dir().join(format!(
            "harvest-issuer-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        let first = Issuer::in_dir(&dir, "harvest-stack").expect("made");
        let token = first.token(Role::Seller, "coop-anji");
        let reopened = Issuer::open(&dir, "harvest-stack").expect("kept");
        let jwks = std::fs::read_to_string(reopened.jwks_file()).expect("written");
        let verifier = Verifier::from_jwks(&jwks, "harvest-stack", AUDIENCE).expect("usable");
        let expected = Identity {
            subject: "coop-anji".to_owned(),
            role: Role::Seller,
        };
        assert_eq!(verifier.verify(&token), Ok(expected.clone()));
        assert_eq!(
            verifier.verify(&reopened.token(Role::Seller, "coop-anji")),
            Ok(expected)
        );
        let other = std::env::temp_dir().join(format!("{}-other", dir.display()));
        let stranger = Issuer::in_dir(&other, "harvest-stack").expect("made");
        assert!(
            verifier
                .verify(&stranger.token(Role::Seller, "coop-anji"))
                .is_err()
        );
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&other);
    }
}
