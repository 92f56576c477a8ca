//! Who is calling, and whether they may.
//!
//! A caller proves who it is with a bearer token: a JWT as an OIDC provider
//! issues it, signed with one of the issuer's keys (a JWKS document), for
//! this audience, not expired. The acting identity is the token's subject
//! and its `role` claim, never a field of the request. Every method of a
//! service has one declared [`Rule`]: the roles that may call it. What a
//! role may do with a given record (a buyer with their own orders only) is
//! the method's own check, on the [`Identity`] this layer hands it.
//!
//! [`AccessLayer`] does the checking in front of a service: a call without a
//! valid token is answered `UNAUTHENTICATED`, one whose role the method's
//! rule does not name `PERMISSION_DENIED`, and an allowed one carries its
//! [`Identity`] in the request's extensions ([`caller`]). Health checks and
//! reflection need no token.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{Either, Ready, ready};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::http::{HeaderMap, Request, Response};
use tower::{Layer, Service};

use crate::limits::Limiter;

/// What a caller is to Harvest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Places, reads, watches and cancels their own orders.
    Buyer,
    /// A farmer or cooperative: their own products, lots, prices and payouts.
    Seller,
    /// Acts only as itself, on its own assignments.
    Courier,
    /// A courier company: registers and reads its own couriers.
    Partner,
    /// Reads everything; refunds with a reason.
    Operator,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Buyer,
        Role::Seller,
        Role::Courier,
        Role::Partner,
        Role::Operator,
    ];

    /// The name in a token's `role` claim.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Buyer => "buyer",
            Role::Seller => "seller",
            Role::Courier => "courier",
            Role::Partner => "partner",
            Role::Operator => "operator",
        }
    }

    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == name)
    }
}

/// The caller of a request, from its token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The token's `sub`: a buyer, seller, courier or partner id, or an
    /// operator's name.
    pub subject: String,
    pub role: Role,
}

/// Which roles may call a method (its full path,
/// `/package.Service/Method`).
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    pub method: &'static str,
    pub roles: &'static [Role],
}

/// Why a token is not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Denied {
    #[error("no bearer token (authorization: Bearer <token>)")]
    Missing,
    #[error("the token is not a JWT signed with one of the issuer's keys: {0}")]
    Invalid(String),
    #[error("the token has expired")]
    Expired,
    #[error("the token is for another audience or issuer")]
    WrongAudience,
    #[error("the token's role {0:?} is none of buyer, seller, courier, partner, operator")]
    UnknownRole(String),
}

/// Why a key set cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("not a JWKS document: {0}")]
    Document(#[source] serde_json::Error),
    #[error("the key set has no signing key Harvest can use (EdDSA, ES256, RS256)")]
    NoUsableKey,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    role: String,
}

/// One of the issuer's keys.
struct Key {
    id: Option<String>,
    algorithm: Algorithm,
    decoding: DecodingKey,
}

/// Checks tokens against the issuer's keys.
pub struct Verifier {
    keys: Vec<Key>,
    issuer: String,
    audience: String,
}

impl Verifier {
    /// The issuer's keys from a JWKS document; keys of other kinds are
    /// skipped.
    pub fn from_jwks(document: &str, issuer: &str, audience: &str) -> Result<Verifier, KeysError> {
        let set: JwkSet = serde_json::from_str(document).map_err(KeysError::Document)?;
        let keys: Vec<Key> = set
            .keys
            .iter()
            .filter_map(|jwk| {
                let algorithm = match (&jwk.common.key_algorithm, &jwk.algorithm) {
                    (Some(KeyAlgorithm::EdDSA), _)
                    | (None, AlgorithmParameters::OctetKeyPair(_)) => Algorithm::EdDSA,
                    (Some(KeyAlgorithm::ES256), _) => Algorithm::ES256,
                    (None, AlgorithmParameters::EllipticCurve(curve))
                        if curve.curve == EllipticCurve::P256 =>
                    {
                        Algorithm::ES256
                    }
                    (Some(KeyAlgorithm::RS256), _) | (None, AlgorithmParameters::RSA(_)) => {
                        Algorithm::RS256
                    }
                    _ => return None,
                };
                Some(Key {
                    id: jwk.common.key_id.clone(),
                    algorithm,
                    decoding: DecodingKey::from_jwk(jwk).ok()?,
                })
            })
            .collect();
        if keys.is_empty() {
            return Err(KeysError::NoUsableKey);
        }
        Ok(Verifier {
            keys,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        })
    }

    /// Who the token says the caller is, if it is valid: signed by a key of
    /// the set (the one its `kid` names, or any of the token's algorithm),
    /// from the issuer, for the audience, not expired (30 s of leeway for
    /// clocks), with a subject and a known role.
    pub fn verify(&self, token: &str) -> Result<Identity, Denied> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|error| Denied::Invalid(error.to_string()))?;
        let candidates = self.keys.iter().filter(|key| {
            key.algorithm == header.alg
                && match (&header.kid, &key.id) {
                    (Some(wanted), Some(id)) => wanted == id,
                    _ => true,
                }
        });
        let mut last = Denied::Invalid("no key of the set has the token's algorithm".to_owned());
        for key in candidates {
            let mut validation = Validation::new(key.algorithm);
            validation.set_issuer(&[&self.issuer]);
            validation.set_audience(&[&self.audience]);
            validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            validation.leeway = 30;
            match jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation) {
                Ok(data) => {
                    let claims = data.claims;
                    let role = Role::parse(&claims.role).ok_or(Denied::UnknownRole(claims.role))?;
                    if claims.sub.trim().is_empty() {
                        return Err(Denied::Invalid("the token has no subject".to_owned()));
                    }
                    return Ok(Identity {
                        subject: claims.sub,
                        role,
                    });
                }
                Err(error) => {
                    use jsonwebtoken::errors::ErrorKind;
                    last = match error.kind() {
                        ErrorKind::ExpiredSignature => return Err(Denied::Expired),
                        ErrorKind::InvalidAudience | ErrorKind::InvalidIssuer => {
                            return Err(Denied::WrongAudience);
                        }
                        _ => Denied::Invalid(error.to_string()),
                    };
                }
            }
        }
        Err(last)
    }
}

/// The bearer token of a request's `authorization` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

/// A service's access rules and the verifier of its callers' tokens.
#[derive(Clone)]
pub struct Access {
    /// `None`: authentication is off (`auth.mode = "off"`).
    verifier: Option<Arc<Verifier>>,
    rules: &'static [Rule],
    /// Per-caller limits, with authentication on.
    limiter: Option<Arc<Limiter>>,
}

impl Access {
    pub fn new(verifier: Arc<Verifier>, rules: &'static [Rule]) -> Access {
        Access {
            verifier: Some(verifier),
            rules,
            limiter: None,
        }
    }

    /// Limits each buyer's and courier's calls and open streams.
    pub fn with_limits(mut self, limits: crate::limits::CallerLimits) -> Access {
        self.limiter = Some(Arc::new(Limiter::new(
            limits,
            crate::limits::streaming_methods(),
        )));
        self
    }

    /// Every call allowed, with no identity: for a network where every
    /// caller is trusted.
    pub fn off(rules: &'static [Rule]) -> Access {
        Access {
            verifier: None,
            rules,
            limiter: None,
        }
    }

    /// The rules of the service's methods.
    pub fn rules(&self) -> &'static [Rule] {
        self.rules
    }

    /// The identity a call to `path` acts as, or the status it is refused
    /// with; `None` for the calls anyone may make (health, reflection) and
    /// for every call while authentication is off.
    pub fn check(&self, path: &str, headers: &HeaderMap) -> Result<Option<Identity>, Status> {
        let Some(verifier) = &self.verifier else {
            return Ok(None);
        };
        if !path.starts_with("/harvest.") {
            return Ok(None);
        }
        let token =
            bearer(headers).ok_or_else(|| Status::unauthenticated(Denied::Missing.to_string()))?;
        let identity = verifier
            .verify(token)
            .map_err(|denied| Status::unauthenticated(denied.to_string()))?;
        let rule = self.rules.iter().find(|rule| rule.method == path);
        match rule {
            Some(rule) if rule.roles.contains(&identity.role) => Ok(Some(identity)),
            Some(rule) => Err(Status::permission_denied(format!(
                "{path} is for {}; the caller is a {}",
                rule.roles
                    .iter()
                    .map(|role| role.as_str())
                    .collect::<Vec<_>>()
                    .join(" or "),
                identity.role.as_str()
            ))),
            None => Err(Status::permission_denied(format!(
                "{path} has no access rule"
            ))),
        }
    }
}

/// The methods of gRPC service `service` (e.g. `harvest.orders.v1.OrdersService`)
/// that no rule of `rules` names, and the rules that name no method of it.
pub fn uncovered(
    service: &str,
    rules: &[Rule],
) -> Result<(Vec<String>, Vec<String>), prost::DecodeError> {
    use prost::Message;
    let set = prost_types::FileDescriptorSet::decode(harvest_proto::FILE_DESCRIPTOR_SET)?;
    let mut methods = Vec::new();
    for file in &set.file {
        for declared in &file.service {
            let name = format!("{}.{}", file.package(), declared.name());
            if name == service {
                methods.extend(
                    declared
                        .method
                        .iter()
                        .map(|method| format!("/{name}/{}", method.name())),
                );
            }
        }
    }
    let without_rule = methods
        .iter()
        .filter(|method| !rules.iter().any(|rule| rule.method == method.as_str()))
        .cloned()
        .collect();
    let without_method = rules
        .iter()
        .filter(|rule| !methods.iter().any(|method| method == rule.method))
        .map(|rule| rule.method.to_owned())
        .collect();
    Ok((without_rule, without_method))
}

/// Whether `rules` give every method of gRPC service `service` exactly one
/// rule and name no other method; the problems in words otherwise.
pub fn check_rules(service: &str, rules: &[Rule]) -> Result<(), String> {
    let (without_rule, without_method) =
        uncovered(service, rules).map_err(|error| format!("descriptors: {error}"))?;
    let mut problems: Vec<String> = without_rule
        .into_iter()
        .map(|method| format!("{method} has no rule"))
        .chain(
            without_method
                .into_iter()
                .map(|method| format!("{method} is no method of {service}")),
        )
        .collect();
    for (index, rule) in rules.iter().enumerate() {
        if rules[..index]
            .iter()
            .any(|other| other.method == rule.method)
        {
            problems.push(format!("{} has two rules", rule.method));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// How a service authenticates its callers.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// `jwt`: every call but health and reflection needs a bearer token of
    /// the issuer; `off`: every call is allowed, for a network where every
    /// caller is trusted.
    pub mode: String,
    /// The issuer's keys, a JWKS document (with `mode = "jwt"`).
    pub jwks_file: Option<std::path::PathBuf>,
    /// The tokens' `iss`.
    pub issuer: String,
    /// The tokens' `aud`.
    pub audience: String,
    /// Requests a second each buyer and each courier may make on average
    /// (0: no limit); over it, `RESOURCE_EXHAUSTED`. Sellers, partners and
    /// operators are not limited.
    pub requests_per_second: u32,
    /// Requests a buyer or courier may make at once above that rate.
    pub request_burst: u32,
    /// Streams (`WatchOrder`, `StreamAssignments`) each buyer and each
    /// courier may hold open at once (0: no limit).
    pub streams_per_caller: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            mode: "off".to_owned(),
            jwks_file: None,
            issuer: String::new(),
            audience: "harvest".to_owned(),
            requests_per_second: 20,
            request_burst: 100,
            streams_per_caller: 8,
        }
    }
}

impl AuthConfig {
    pub fn validate(&self) -> Result<(), String> {
        match self.mode.as_str() {
            "off" => Ok(()),
            "jwt" if self.jwks_file.is_none() => Err(
                "auth.jwks_file must name the issuer's JWKS file with auth.mode = \"jwt\""
                    .to_owned(),
            ),
            "jwt" if self.issuer.trim().is_empty() => {
                Err("auth.issuer must be set with auth.mode = \"jwt\"".to_owned())
            }
            "jwt" => Ok(()),
            other => Err(format!("auth.mode must be jwt or off, got {other:?}")),
        }
    }

    /// The access check for a service with `rules`, its keys read from the
    /// JWKS file.
    pub fn access(&self, rules: &'static [Rule]) -> Result<Access, String> {
        let Some(file) = self.jwks_file.as_ref().filter(|_| self.mode == "jwt") else {
            return Ok(Access::off(rules));
        };
        let document = std::fs::read_to_string(file)
            .map_err(|error| format!("reading auth.jwks_file {}: {error}", file.display()))?;
        let verifier = Verifier::from_jwks(&document, &self.issuer, &self.audience)
            .map_err(|error| format!("auth.jwks_file {}: {error}", file.display()))?;
        let limits = crate::limits::CallerLimits {
            requests_per_second: self.requests_per_second,
            request_burst: self.request_burst,
            streams_per_caller: self.streams_per_caller,
        };
        Ok(Access::new(Arc::new(verifier), rules).with_limits(limits))
    }
}

/// The caller of a request, when authentication is on.
pub fn caller<T>(request: &tonic::Request<T>) -> Option<Identity> {
    request.extensions().get::<Identity>().cloned()
}

/// A refusal of a caller acting on what is not theirs: `PERMISSION_DENIED`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct NotYours(pub String);

impl From<NotYours> for Status {
    fn from(refusal: NotYours) -> Status {
        Status::permission_denied(refusal.0)
    }
}

/// A caller in `role` acts as itself: `id`, the request's `field`, must be
/// the caller's subject, and is set to it when left empty. Callers in other
/// roles (an operator, a partner for its couriers), and every caller while
/// authentication is off, name anyone.
pub fn act_as(
    caller: Option<&Identity>,
    role: Role,
    field: &str,
    id: &mut String,
) -> Result<(), NotYours> {
    let Some(caller) = caller.filter(|caller| caller.role == role) else {
        return Ok(());
    };
    if id.is_empty() {
        id.clone_from(&caller.subject);
    }
    if *id == caller.subject {
        Ok(())
    } else {
        Err(NotYours(format!(
            "{field} {id} is not the caller, {} {}",
            role.as_str(),
            caller.subject
        )))
    }
}

/// A caller in `role` touches only what is its own: `owner` is who owns
/// `what` (an order's buyer, a product's seller). Callers in other roles,
/// and every caller while authentication is off, pass.
pub fn owned_by(
    caller: Option<&Identity>,
    role: Role,
    owner: &str,
    what: impl std::fmt::Display,
) -> Result<(), NotYours> {
    match caller {
        Some(caller) if caller.role == role && caller.subject != owner => Err(NotYours(format!(
            "{what} belongs to another {}",
            role.as_str()
        ))),
        _ => Ok(()),
    }
}

/// Checks every call against [`Access`] before the service sees it.
#[derive(Clone)]
pub struct AccessLayer(pub Access);

impl<S> Layer<S> for AccessLayer {
    type Service = Checked<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Checked {
            inner,
            access: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Checked<S> {
    inner: S,
    access: Access,
}

impl<S> Service<Request<Body>> for Checked<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Either<
        Either<Ready<Result<Response<Body>, Infallible>>, S::Future>,
        Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let refused = |status: Status| Either::Left(Either::Left(ready(Ok(status.into_http()))));
        let path = request.uri().path().to_owned();
        let identity = match self.access.check(&path, request.headers()) {
            Ok(found) => found,
            Err(status) => return refused(status),
        };
        let admitted = match (&self.access.limiter, &identity) {
            (Some(limiter), Some(identity)) => limiter.admit(identity, &path),
            _ => Ok(None),
        };
        if let Some(identity) = identity {
            request.extensions_mut().insert(identity);
        }
        match admitted {
            Err(status) => refused(status),
            Ok(None) => Either::Left(Either::Right(self.inner.call(request))),
            // A stream keeps its place for as long as its body lives.
            Ok(Some(place)) => {
                let response = self.inner.call(request);
                Either::Right(Box::pin(async move {
                    let response = response.await?;
                    Ok(response.map(|body| {
                        Body::new(http_body_util::BodyExt::map_frame(body, move |frame| {
                            let _held = &place;
                            frame
                        }))
                    }))
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{SystemTime, UNIX_EPOCH};

    use base64::Engine;
    use jsonwebtoken::{EncodingKey, Header};
    use ring::signature::{Ed25519KeyPair, KeyPair};

    use super::*;

    const ISSUER: &str = "https://id.harvest.example";
    const AUDIENCE: &str = "harvest";

    /// A signing key and the JWKS document of its public half.
    fn issuer_key(kid: &str) -> (EncodingKey, String) {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("a key");
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("parsed");
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
        let jwks = format!(
            r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","alg":"EdDSA","use":"sig","kid":"{kid}","x":"{x}"}}]}}"#
        );
        (EncodingKey::from_ed_der(pkcs8.as_ref()), jwks)
    }

    fn token(key: &EncodingKey, kid: &str, claims: serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, &claims, key).expect("signed")
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_secs()
    }

    fn claims(role: &str, expires_in: i64) -> serde_json::Value {
        serde_json::json!({
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "buyer-hangzhou-1",
            "role": role,
            "exp": now() as i64 + expires_in,
        })
    }

    #[test]
    fn a_valid_token_names_the_caller_and_a_bad_one_says_why() {
        let (key, jwks) = issuer_key("k1");
        let verifier = Verifier::from_jwks(&jwks, ISSUER, AUDIENCE).expect("usable keys");
        assert_eq!(
            verifier.verify(&token(&key, "k1", claims("buyer", 600))),
            Ok(Identity {
                subject: "buyer-hangzhou-1".to_owned(),
                role: Role::Buyer
            })
        );
        assert_eq!(
            verifier.verify(&token(&key, "k1", claims("buyer", -120))),
            Err(Denied::Expired)
        );
        let mut elsewhere = claims("buyer", 600);
        elsewhere["aud"] = "another-shop".into();
        assert_eq!(
            verifier.verify(&token(&key, "k1", elsewhere)),
            Err(Denied::WrongAudience)
        );
        assert_eq!(
            verifier.verify(&token(&key, "k1", claims("admin", 600))),
            Err(Denied::UnknownRole("admin".to_owned()))
        );
        let (stranger, _) = issuer_key("k1");
        assert!(matches!(
            verifier.verify(&token(&stranger, "k1", claims("operator", 600))),
            Err(Denied::Invalid(_))
        ));
        assert!(matches!(
            verifier.verify("not.a.jwt"),
            Err(Denied::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn the_layer_refuses_on_its_own_and_hands_allowed_calls_their_identity() {
        use tower::ServiceExt;
        let (key, jwks) = issuer_key("k1");
        let verifier = Arc::new(Verifier::from_jwks(&jwks, ISSUER, AUDIENCE).expect("keys"));
        let service = AccessLayer(Access::new(verifier, RULES)).layer(tower::service_fn(
            |request: Request<Body>| async move {
                let who = request
                    .extensions()
                    .get::<Identity>()
                    .map(|identity| identity.subject.clone())
                    .unwrap_or_default();
                let response = Response::builder()
                    .header("x-caller", who)
                    .body(Body::empty())
                    .expect("a response");
                Ok::<_, Infallible>(response)
            },
        ));
        let call = |token: Option<String>| {
            let mut request = Request::builder()
                .uri("http://orders/harvest.orders.v1.OrdersService/PlaceOrder")
                .body(Body::empty())
                .expect("a request");
            if let Some(token) = token {
                request.headers_mut().insert(
                    "authorization",
                    format!("Bearer {token}").parse().expect("a header value"),
                );
            }
            service.clone().oneshot(request)
        };
        let refused = call(None).await.expect("answered");
        assert_eq!(
            refused.headers().get("grpc-status").map(|v| v.as_bytes()),
            Some(b"16".as_slice()),
            "UNAUTHENTICATED, without reaching the service"
        );
        assert!(refused.headers().get("x-caller").is_none());
        let allowed = call(Some(token(&key, "k1", claims("buyer", 600))))
            .await
            .expect("answered");
        assert_eq!(
            allowed.headers().get("x-caller").map(|v| v.as_bytes()),
            Some(b"buyer-hangzhou-1".as_slice())
        );
    }

    #[test]
    fn a_missing_doubled_or_stray_rule_is_named() {
        let service = "harvest.orders.v1.OrdersService";
        let problems = check_rules(service, RULES).expect_err("three methods lack a rule");
        assert!(problems.contains("CancelOrder has no rule"), "{problems}");
        const STRAY: &[Rule] = &[
            Rule {
                method: "/harvest.orders.v1.OrdersService/PlaceOrder",
                roles: &[Role::Buyer],
            },
            Rule {
                method: "/harvest.orders.v1.OrdersService/PlaceOrder",
                roles: &[Role::Operator],
            },
            Rule {
                method: "/harvest.orders.v1.OrdersService/DeleteEverything",
                roles: &[Role::Operator],
            },
        ];
        let problems = check_rules(service, STRAY).expect_err("problems");
        assert!(problems.contains("PlaceOrder has two rules"), "{problems}");
        assert!(
            problems.contains("DeleteEverything is no method"),
            "{problems}"
        );
    }

    #[test]
    fn settings_that_cannot_work_are_refused_with_the_setting_named() {
        assert_eq!(AuthConfig::default().validate(), Ok(()));
        let jwt = AuthConfig {
            mode: "jwt".to_owned(),
            issuer: ISSUER.to_owned(),
            ..AuthConfig::default()
        };
        assert!(
            jwt.validate()
                .expect_err("no keys")
                .contains("auth.jwks_file")
        );
        let no_issuer = AuthConfig {
            jwks_file: Some("/nonexistent/jwks.json".into()),
            issuer: String::new(),
            ..jwt.clone()
        };
        assert!(
            no_issuer
                .validate()
                .expect_err("no issuer")
                .contains("auth.issuer")
        );
        let typo = AuthConfig {
            mode: "JWT!".to_owned(),
            ..AuthConfig::default()
        };
        assert!(typo.validate().expect_err("unknown").contains("auth.mode"));
        let unreadable = AuthConfig {
            jwks_file: Some("/nonexistent/jwks.json".into()),
            ..jwt
        };
        assert!(
            unreadable
                .access(&[])
                .err()
                .expect("unreadable")
                .contains("/nonexistent/jwks.json")
        );
    }

    #[test]
    fn a_key_set_without_a_usable_key_is_refused() {
        assert!(matches!(
            Verifier::from_jwks(r#"{"keys":[]}"#, ISSUER, AUDIENCE),
            Err(KeysError::NoUsableKey)
        ));
        assert!(matches!(
            Verifier::from_jwks("{", ISSUER, AUDIENCE),
            Err(KeysError::Document(_))
        ));
    }

    const RULES: &[Rule] = &[
        Rule {
            method: "/harvest.orders.v1.OrdersService/PlaceOrder",
            roles: &[Role::Buyer],
        },
        Rule {
            method: "/harvest.orders.v1.OrdersService/GetOrder",
            roles: &[Role::Buyer, Role::Operator],
        },
    ];

    #[test]
    fn each_method_admits_the_roles_of_its_rule_only() {
        let (key, jwks) = issuer_key("k1");
        let verifier = Arc::new(Verifier::from_jwks(&jwks, ISSUER, AUDIENCE).expect("keys"));
        let access = Access::new(verifier, RULES);
        let headers = |role: Option<&str>| {
            let mut headers = HeaderMap::new();
            if let Some(role) = role {
                let bearer = format!("Bearer {}", token(&key, "k1", claims(role, 600)));
                headers.insert("authorization", bearer.parse().expect("a header value"));
            }
            headers
        };
        let place = "/harvest.orders.v1.OrdersService/PlaceOrder";
        let get = "/harvest.orders.v1.OrdersService/GetOrder";
        for role in Role::ALL {
            let code = |path| {
                access
                    .check(path, &headers(Some(role.as_str())))
                    .map_err(|status| status.code())
            };
            let allowed = |path: &str| {
                RULES
                    .iter()
                    .any(|r| r.method == path && r.roles.contains(&role))
            };
            for path in [place, get] {
                match code(path) {
                    Ok(Some(identity)) => {
                        assert!(allowed(path), "{role:?} on {path}");
                        assert_eq!(identity.role, role);
                    }
                    Err(tonic::Code::PermissionDenied) => {
                        assert!(!allowed(path), "{role:?} on {path}")
                    }
                    other => panic!("{role:?} on {path}: {other:?}"),
                }
            }
            assert_eq!(
                access
                    .check(
                        "/harvest.orders.v1.OrdersService/CancelOrder",
                        &headers(Some(role.as_str()))
                    )
                    .map_err(|status| status.code())
                    .err(),
                Some(tonic::Code::PermissionDenied),
                "a method without a rule is for nobody"
            );
        }
        let without = access.check(place, &headers(None)).expect_err("no token");
        assert_eq!(without.code(), tonic::Code::Unauthenticated);
        assert!(
            without.message().contains("Bearer"),
            "{}",
            without.message()
        );
        assert_eq!(
            access
                .check("/grpc.health.v1.Health/Check", &headers(None))
                .map_err(|s| s.code()),
            Ok(None),
            "health needs no token"
        );
    }
}
