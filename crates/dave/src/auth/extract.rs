//! The caller of each request, as an axum extractor: `Caller` in a handler's
//! arguments runs DESIGN §3's rules, with the database for API keys.
//!
//! The first credential present decides ([`super::presented`]): an API key
//! is hashed and looked up (not revoked), a bearer token is verified with
//! `JWT_SECRET`, a session token with `SESSION_SECRET`. Present but wrong is
//! a 401; nothing falls back to anonymous. With no credential at all the
//! caller is a new anonymous user, and its session token must reach the
//! client in the `X-Session-Token` response header. An extractor cannot touch
//! the response, so [`HandOutSession`], a middleware on the API routes,
//! puts an empty [`SessionSlot`] into the request's extensions when (and only
//! when) the request carries no credential; the extractor fills it with the
//! token it issued and the middleware copies it onto the response, whatever
//! the handler answered. Requests with credentials pay for none of this.
//!
//! [`Admin`] is the same caller, refused with 403 unless it is an admin;
//! being an extractor, it answers before the body is even read.
//!
//! Both work with any router state that yields the keys ([`Verifiers`]) and
//! the database (for API keys) through `FromRef`; this module never names
//! the service's state.

use std::sync::{Arc, OnceLock};

use axum::extract::{FromRef, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;
use pgkit::pool::Database;
use uuid::Uuid;

use super::{
    api_key, presented, AuthError, Caller, CallerKind, Credential, Verifiers, SESSION_HEADER,
};
use crate::error::ApiError;
use crate::middleware::Around;
use crate::repo::api_keys;

/// Where the extractor leaves a new anonymous caller's session token for
/// [`HandOutSession`] to send.
#[derive(Debug, Clone, Default)]
pub struct SessionSlot(Arc<OnceLock<(Uuid, HeaderValue)>>);

/// Middleware for the API routes: sends the `X-Session-Token` of a new
/// anonymous caller (see the module docs).
/// Wrap it in [`crate::middleware::AroundLayer`].
#[derive(Debug, Clone, Copy)]
pub struct HandOutSession;

impl Around for HandOutSession {
    /// The slot of a request without credentials.
    type Carry = Option<SessionSlot>;

    fn before(&self, request: &mut Request) -> (Option<SessionSlot>, Option<Response>) {
        if !matches!(presented(request.headers()), Ok(Credential::None)) {
            return (None, None);
        }
        let slot = SessionSlot::default();
        request.extensions_mut().insert(slot.clone());
        (Some(slot), None)
    }

    fn after(slot: Option<SessionSlot>, response: &mut Response) {
        if let Some((_, token)) = slot.as_ref().and_then(|slot| slot.0.get()) {
            response
                .headers_mut()
                .insert(HeaderName::from_static(SESSION_HEADER), token.clone());
        }
    }
}

impl<S> FromRequestParts<S> for Caller
where
    S: Send + Sync,
    Database: FromRef<S>,
    Verifiers: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Caller, ApiError> {
        match presented(&parts.headers)? {
            Credential::ApiKey(key) => {
                let hash = api_key::key_hash(key).map_err(AuthError::from)?;
                match api_keys::find_active(&Database::from_ref(state), &hash).await? {
                    Some(owner) => Ok(Caller::api_key(owner.user_id, owner.is_admin, owner.tier)),
                    None => Err(AuthError::UnknownApiKey.into()),
                }
            }
            Credential::Bearer(token) => {
                let verifiers = Verifiers::from_ref(state);
                let verifier = verifiers.jwt().ok_or(AuthError::BearerDisabled)?;
                let identity = verifier.verify(token).map_err(AuthError::from)?;
                Ok(Caller::bearer(identity))
            }
            Credential::Session(token) => {
                let session = Verifiers::from_ref(state)
                    .sessions()
                    .verify(token)
                    .map_err(AuthError::from)?;
                Ok(Caller::session(session))
            }
            Credential::None => new_anonymous(parts, &Verifiers::from_ref(state)),
        }
    }
}

/// A new anonymous caller whose session token goes into the request's
/// [`SessionSlot`]; a second extraction in the same request gets the same one.
fn new_anonymous(parts: &Parts, verifiers: &Verifiers) -> Result<Caller, ApiError> {
    let Some(SessionSlot(slot)) = parts.extensions.get::<SessionSlot>() else {
        // The route lacks `HandOutSession`: the client could never resume
        // this session, so refuse rather than create rows nobody can reach.
        return Err(ApiError::internal(
            "anonymous caller on a route without the session middleware",
        ));
    };
    let user_id = match slot.get() {
        Some((user_id, _)) => *user_id,
        None => {
            let user_id = Uuid::new_v4();
            let token = verifiers.sessions().issue(user_id).token;
            let value = HeaderValue::try_from(token).map_err(ApiError::internal)?;
            slot.get_or_init(|| (user_id, value)).0
        }
    };
    Ok(Caller {
        user_id,
        is_admin: false,
        tier: None,
        kind: CallerKind::NewAnonymous,
    })
}

/// A caller that must be an admin: 403 otherwise.
#[derive(Debug, Clone)]
pub struct Admin(pub Caller);

impl<S> FromRequestParts<S> for Admin
where
    S: Send + Sync,
    Database: FromRef<S>,
    Verifiers: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Admin, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        caller.require_admin()?;
        Ok(Admin(caller))
    }
}
