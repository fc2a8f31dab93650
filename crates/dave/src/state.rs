//! What every handler shares: the database handle, the configuration, the
//! metrics and the credential keys, behind one `Arc`. This is the
//! composition root: it builds each module's piece (the JWT verifier and
//! session signer of [`crate::auth`], the [`ConsistencyCodec`], the
//! [`CursorCodec`]) and hands the pieces out through `FromRef`, so the
//! modules' extractors and middleware never name [`AppState`] and nothing
//! it holds depends on it.
//!
//! axum clones the state for every extractor and middleware of every
//! request, so it is one reference count, not one per field. The keys are
//! prepared once here rather than per request, and a bad key fails at
//! start-up with the variable's name.

use std::ops::Deref;
use std::sync::Arc;

use axum::extract::FromRef;
use pgkit::pool::Database;
use pgkit::settings::SettingsError;

use crate::auth::jwt::JwtVerifier;
use crate::auth::session::SessionSigner;
use crate::auth::Verifiers;
use crate::config::Config;
use crate::consistency::ConsistencyCodec;
use crate::cursor::CursorCodec;
use crate::metrics::Metrics;

/// The axum state of every route: a cheap handle on [`Shared`].
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// What [`AppState`] points at.
pub struct Shared {
    pub db: Database,
    pub config: Config,
    pub metrics: Metrics,
    /// The credential keys (`JWT_SECRET`, `SESSION_SECRET`).
    pub verifiers: Verifiers,
    /// Read-your-writes tokens, keyed from `CURSOR_SECRET`.
    pub consistency: ConsistencyCodec,
    /// Pagination cursors, keyed from `CURSOR_SECRET` too.
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

impl FromRef<AppState> for Database {
    fn from_ref(state: &AppState) -> Database {
        state.db.clone()
    }
}

impl FromRef<AppState> for Verifiers {
    fn from_ref(state: &AppState) -> Verifiers {
        state.verifiers.clone()
    }
}

impl FromRef<AppState> for ConsistencyCodec {
    fn from_ref(state: &AppState) -> ConsistencyCodec {
        state.consistency.clone()
    }
}

/// The credential keys built from the configuration's secrets.
fn verifiers(config: &Config) -> Result<Verifiers, SettingsError> {
    let jwt = match &config.jwt_secret {
        None => None,
        Some(secret) => Some(JwtVerifier::new(secret.expose().as_bytes()).map_err(|e| {
            SettingsError::new("JWT_SECRET", e.to_string(), "a non-empty HS256 key")
        })?),
    };
    let sessions = SessionSigner::new(config.session_secret.expose().as_bytes())
        .map_err(|e| SettingsError::new("SESSION_SECRET", e.to_string(), "a long random value"))?;
    Ok(Verifiers::new(jwt, sessions))
}

impl AppState {
    /// The state for `db` and `config`, with fresh metrics.
    pub fn new(db: Database, config: Config) -> Result<AppState, SettingsError> {
        let verifiers = verifiers(&config)?;
        let cursor_secret = config.cursor_secret.expose().as_bytes();
        let consistency = ConsistencyCodec::new(cursor_secret);
        let cursors = CursorCodec::new(cursor_secret);
        Ok(AppState(Arc::new(Shared {
            db,
            config,
            metrics: Metrics::new(),
            verifiers,
            consistency,
            cursors,
        })))
    }
}
