//! What every handler shares: the database handle, the configuration, the
//! metrics and the credential keys, behind one `Arc`.
//!
//! axum clones the state for every extractor and middleware of every
//! request, so it is one reference count, not one per field. The keys (JWT
//! verifier, session signer, consistency and cursor codecs) are prepared once here rather
//! than per request, and a bad key fails at start-up with the variable's
//! name.

use std::ops::Deref;
use std::sync::Arc;

use pgkit::pool::Database;
use pgkit::settings::SettingsError;

use crate::api::page::CursorCodec;
use crate::auth::jwt::JwtVerifier;
use crate::auth::session::SessionSigner;
use crate::config::Config;
use crate::consistency::ConsistencyCodec;
use crate::metrics::Metrics;

/// The axum state of every route: a cheap handle on [`Shared`].
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// What [`AppState`] points at.
pub struct Shared {
    pub db: Database,
    pub config: Config,
    pub metrics: Metrics,
    pub auth: AuthKeys,
    /// Pagination cursors, keyed by `CURSOR_SECRET`.
    pub cursors: CursorCodec,
}

impl Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("db", &self.db)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Credential keys built from the configuration's secrets.
#[derive(Debug)]
pub struct AuthKeys {
    /// `None` when `JWT_SECRET` is unset: bearer auth is off (a bearer token is then a 401).
    pub jwt: Option<JwtVerifier>,
    pub sessions: SessionSigner,
    /// Read-your-writes tokens, keyed from `CURSOR_SECRET` too.
    pub consistency: ConsistencyCodec,
}

impl AuthKeys {
    pub fn from_config(config: &Config) -> Result<AuthKeys, SettingsError> {
        let jwt = match &config.jwt_secret {
            None => None,
            Some(secret) => Some(JwtVerifier::new(secret.expose().as_bytes()).map_err(|e| {
                SettingsError::new("JWT_SECRET", e.to_string(), "a non-empty HS256 key")
            })?),
        };
        let sessions =
            SessionSigner::new(config.session_secret.expose().as_bytes()).map_err(|e| {
                SettingsError::new("SESSION_SECRET", e.to_string(), "a long random value")
            })?;
        let consistency = ConsistencyCodec::new(config.cursor_secret.expose().as_bytes());
        Ok(AuthKeys {
            jwt,
            sessions,
            consistency,
        })
    }
}

impl AppState {
    /// The state for `db` and `config`, with fresh metrics.
    pub fn new(db: Database, config: Config) -> Result<AppState, SettingsError> {
        let auth = AuthKeys::from_config(&config)?;
        let cursors = CursorCodec::new(config.cursor_secret.expose().as_bytes());
        Ok(AppState(Arc::new(Shared {
            db,
            config,
            metrics: Metrics::new(),
            auth,
            cursors,
        })))
    }
}
