//! Who `harvest` calls as: a bearer token from the deployment's identity
//! provider, or tokens signed on the spot by a local stack's issuer for
//! whoever each command acts as.

use std::path::PathBuf;
use std::sync::Arc;

use harvest_kit::issuer::{Issuer, LOCAL_ISSUER, Minter};
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Interceptor;

use crate::error::CliError;

#[derive(Clone, Debug, clap::Args)]
#[command(next_help_heading = "Identity")]
pub struct IdentityArgs {
    /// A bearer token (a JWT of the deployment's identity provider), sent
    /// with every call; the services act on its subject and role.
    #[arg(
        long,
        global = true,
        env = "HARVEST_TOKEN",
        value_name = "JWT",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Without --token: a local stack's token issuer (`harvest-stack run`
    /// keeps its key here). Each call is then signed for whoever the command
    /// acts as: the buyer of `order place` and `order cancel`; the courier of
    /// `courier status`, `courier assignments` and the shipment steps; the
    /// partner of `courier register`; an operator for the rest. With no key
    /// there, calls carry no token.
    #[arg(
        long,
        global = true,
        env = "HARVEST_ISSUER_DIR",
        value_name = "DIR",
        default_value = "target/harvest/auth"
    )]
    pub issuer_dir: PathBuf,
}

/// How calls are signed.
#[derive(Clone, Default)]
pub enum Credentials {
    /// No token: for services with authentication off.
    #[default]
    None,
    Token(AsciiMetadataValue),
    Local(Minter),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credentials::None => "no token",
            Credentials::Token(_) => "a bearer token",
            Credentials::Local(_) => "a local issuer's tokens",
        })
    }
}

impl Credentials {
    pub fn from_args(args: &IdentityArgs) -> Result<Credentials, CliError> {
        if let Some(token) = args.token.as_deref().map(str::trim) {
            let value = MetadataValue::try_from(format!("Bearer {token}"))
                .map_err(|_| CliError::Usage("--token: not a token".to_owned()))?;
            return Ok(Credentials::Token(value));
        }
        if !args
            .issuer_dir
            .join(harvest_kit::issuer::KEY_FILE)
            .is_file()
        {
            return Ok(Credentials::None);
        }
        let issuer = Issuer::open(&args.issuer_dir, LOCAL_ISSUER).map_err(|error| {
            let cause = std::error::Error::source(&error)
                .map(|cause| format!(": {cause}"))
                .unwrap_or_default();
            CliError::Usage(format!("--issuer-dir: {error}{cause}"))
        })?;
        Ok(Credentials::Local(Minter::new(Some(Arc::new(issuer)))))
    }
}

impl Interceptor for Credentials {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        match self {
            Credentials::None => Ok(request),
            Credentials::Token(value) => {
                request
                    .metadata_mut()
                    .insert("authorization", value.clone());
                Ok(request)
            }
            Credentials::Local(minter) => minter.call(request),
        }
    }
}
