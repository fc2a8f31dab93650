//! Who is calling: the credential rules of DESIGN §3, without the database.
//!
//! A request is looked at in a fixed order and the first credential present
//! decides: `X-API-Key` ([`api_key`], hashed then looked up in `api_keys`),
//! then `Authorization: Bearer` ([`jwt`]), then `X-Session-Token`
//! ([`session`]); with none of them the caller is a new anonymous user who is
//! handed a session token. A credential that is present but wrong is a 401 and
//! never falls back to the next one or to anonymous: otherwise a typo in a key
//! would silently turn an admin into a stranger with an empty history.
//! Everything here is pure and cheap (no I/O, keys prepared once), because it
//! runs on every request; the axum extractor that adds the API-key lookup is
//! [`extract`]. See docs/auth.md.

pub mod api_key;
pub mod extract;
pub mod jwt;
pub mod session;

use std::sync::Arc;

use axum::http::{header, HeaderMap};
use uuid::Uuid;

use crate::error::ApiError;

/// Request header carrying an API key.
pub const API_KEY_HEADER: &str = "x-api-key";
/// Request header carrying an anonymous session token, and the response
/// header that hands a new one out.
pub const SESSION_HEADER: &str = "x-session-token";

/// The keys that check credentials: the bearer verifier and the session
/// signer, prepared once at start-up. The [`extract`]ors take them from the
/// router's state through `FromRef`; a clone is one reference count.
#[derive(Debug, Clone)]
pub struct Verifiers(Arc<Keys>);

#[derive(Debug)]
struct Keys {
    jwt: Option<jwt::JwtVerifier>,
    sessions: session::SessionSigner,
}

impl Verifiers {
    /// `jwt` is `None` when bearer auth is off (`JWT_SECRET` unset): a
    /// bearer token is then a 401.
    pub fn new(jwt: Option<jwt::JwtVerifier>, sessions: session::SessionSigner) -> Self {
        Verifiers(Arc::new(Keys { jwt, sessions }))
    }

    /// The bearer token verifier, when bearer auth is on.
    pub fn jwt(&self) -> Option<&jwt::JwtVerifier> {
        self.0.jwt.as_ref()
    }

    /// Issues and checks anonymous session tokens.
    pub fn sessions(&self) -> &session::SessionSigner {
        &self.0.sessions
    }
}

/// How the caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerKind {
    /// `X-API-Key`, found in `api_keys` and not revoked.
    ApiKey,
    /// `Authorization: Bearer <jwt>`.
    Bearer,
    /// `X-Session-Token` issued earlier: a returning anonymous user.
    Session,
    /// No credentials: an anonymous user created for this request; the
    /// response must carry its new `X-Session-Token`.
    NewAnonymous,
}

/// The caller of a request, as every handler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: Uuid,
    pub is_admin: bool,
    /// The API key's tier; `None` for other kinds of caller.
    pub tier: Option<String>,
    pub kind: CallerKind,
}

impl Caller {
    /// A caller proven by an API key row (`api_keys`, not revoked).
    pub fn api_key(user_id: Uuid, is_admin: bool, tier: String) -> Self {
        Caller {
            user_id,
            is_admin,
            tier: Some(tier),
            kind: CallerKind::ApiKey,
        }
    }

    /// A caller proven by a bearer token.
    pub fn bearer(identity: jwt::BearerIdentity) -> Self {
        Caller {
            user_id: identity.user_id,
            is_admin: identity.is_admin,
            tier: None,
            kind: CallerKind::Bearer,
        }
    }

    /// An anonymous caller resuming its session.
    pub fn session(session: session::Session) -> Self {
        Caller {
            user_id: session.user_id,
            is_admin: false,
            tier: None,
            kind: CallerKind::Session,
        }
    }

    /// A brand-new anonymous caller with a fresh random id.
    pub fn new_anonymous() -> Self {
        Caller {
            user_id: Uuid::new_v4(),
            is_admin: false,
            tier: None,
            kind: CallerKind::NewAnonymous,
        }
    }

    /// Anonymous callers (new or returning) are never admins.
    pub fn is_anonymous(&self) -> bool {
        matches!(self.kind, CallerKind::Session | CallerKind::NewAnonymous)
    }

    /// `Ok` for admins, the contract's 403 for everyone else.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.is_admin {
            Ok(())
        } else {
            Err(ApiError::admin_only())
        }
    }
}

/// The credential a request presents, picked by DESIGN §3's order.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    ApiKey(&'a str),
    Bearer(&'a str),
    Session(&'a str),
    None,
}

impl std::fmt::Debug for Credential<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The variant only: the value is a secret.
        let kind = match self {
            Credential::ApiKey(_) => "ApiKey(<redacted>)",
            Credential::Bearer(_) => "Bearer(<redacted>)",
            Credential::Session(_) => "Session(<redacted>)",
            Credential::None => "None",
        };
        f.write_str(kind)
    }
}

/// Why the presented credentials were refused: always a 401, never anonymous.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    #[error("the {0} header is not valid text")]
    NotText(&'static str),
    #[error("malformed Authorization header: expected `Bearer <token>`")]
    MalformedAuthorization,
    #[error("bearer tokens are not accepted by this service (JWT_SECRET is not set)")]
    BearerDisabled,
    #[error("unknown or revoked API key")]
    UnknownApiKey,
    #[error(transparent)]
    ApiKey(#[from] api_key::ApiKeyError),
    #[error(transparent)]
    Jwt(#[from] jwt::JwtError),
    #[error(transparent)]
    Session(#[from] session::SessionError),
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        ApiError::Unauthorized(error.to_string())
    }
}

fn text<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<Option<&'a str>, AuthError> {
    match headers.get(name) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .map(Some)
            .map_err(|_| AuthError::NotText(name)),
    }
}

/// The first credential present, in DESIGN §3's order. A header that is
/// present but unreadable is an error here, not a reason to look further.
pub fn presented(headers: &HeaderMap) -> Result<Credential<'_>, AuthError> {
    if let Some(key) = text(headers, API_KEY_HEADER)? {
        return Ok(Credential::ApiKey(key.trim()));
    }
    if let Some(value) = text(headers, header::AUTHORIZATION.as_str())? {
        let (scheme, token) = value
            .trim()
            .split_once(' ')
            .ok_or(AuthError::MalformedAuthorization)?;
        let token = token.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
            return Err(AuthError::MalformedAuthorization);
        }
        return Ok(Credential::Bearer(token));
    }
    if let Some(token) = text(headers, SESSION_HEADER)? {
        return Ok(Credential::Session(token.trim()));
    }
    Ok(Credential::None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use axum::response::IntoResponse;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn order_is_api_key_then_bearer_then_session() {
        let all = headers(&[
            ("x-session-token", "s"),
            ("authorization", "Bearer j"),
            ("x-api-key", "k"),
        ]);
        assert_eq!(presented(&all), Ok(Credential::ApiKey("k")));
        let two = headers(&[("x-session-token", "s"), ("authorization", "Bearer j")]);
        assert_eq!(presented(&two), Ok(Credential::Bearer("j")));
        let one = headers(&[("x-session-token", "s")]);
        assert_eq!(presented(&one), Ok(Credential::Session("s")));
        assert_eq!(presented(&HeaderMap::new()), Ok(Credential::None));
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let h = headers(&[("authorization", "bearer  tok ")]);
        assert_eq!(presented(&h), Ok(Credential::Bearer("tok")));
    }

    #[test]
    fn other_authorization_schemes_are_refused_not_ignored() {
        for value in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "token", ""] {
            let h = headers(&[("authorization", value), ("x-session-token", "s")]);
            assert_eq!(
                presented(&h),
                Err(AuthError::MalformedAuthorization),
                "{value:?}"
            );
        }
    }

    #[test]
    fn non_text_header_is_refused() {
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_bytes(b"\xff\xfe").unwrap());
        assert_eq!(presented(&h), Err(AuthError::NotText("x-api-key")));
    }

    #[test]
    fn auth_errors_are_401() {
        let errors = [
            AuthError::UnknownApiKey,
            AuthError::BearerDisabled,
            jwt::JwtError::Expired.into(),
            session::SessionError::BadSignature.into(),
            api_key::ApiKeyError::Empty.into(),
        ];
        for error in errors {
            let response = ApiError::from(error).into_response();
            assert_eq!(response.status(), 401);
        }
    }

    #[test]
    fn admin_gate() {
        let mut caller = Caller::new_anonymous();
        assert!(caller.is_anonymous());
        assert!(matches!(
            caller.require_admin(),
            Err(ApiError::Forbidden(_))
        ));
        caller.is_admin = true;
        assert!(caller.require_admin().is_ok());
    }

    #[test]
    fn callers_from_verified_credentials() {
        let user = Uuid::new_v4();
        let bearer = Caller::bearer(jwt::BearerIdentity {
            user_id: user,
            is_admin: true,
        });
        assert_eq!(
            (bearer.user_id, bearer.is_admin, bearer.kind),
            (user, true, CallerKind::Bearer)
        );
        assert!(!bearer.is_anonymous());
        let signer = session::SessionSigner::new(b"k").unwrap();
        let verified = signer.verify(&signer.issue(user).token).unwrap();
        let resumed = Caller::session(verified);
        assert_eq!((resumed.user_id, resumed.kind), (user, CallerKind::Session));
        assert!(resumed.is_anonymous() && !resumed.is_admin);
    }

    #[test]
    fn credential_debug_hides_values() {
        assert_eq!(
            format!("{:?}", Credential::ApiKey("secret")),
            "ApiKey(<redacted>)"
        );
    }
}
