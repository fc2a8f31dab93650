//! Calling the API as someone: the credential kinds of DESIGN §3 ([`Who`]),
//! one request helper that returns status, headers and JSON body together
//! ([`Reply`]), and the assertions on the contract's error body.

use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::Value;
use uuid::Uuid;

use super::{bearer_token, TestApp, ADMIN_KEY, USER_KEY};

/// User id of the fixture API keys (`migrations/data/001_test_fixtures.sql`).
pub const ADMIN_KEY_USER: &str = "00000000-0000-4000-8000-000000000001";
pub const USER_KEY_USER: &str = "00000000-0000-4000-8000-000000000002";

/// Who makes a call, and with which credential.
#[derive(Debug, Clone)]
pub enum Who {
    /// No credential: a new anonymous user each time.
    Nobody,
    /// `Authorization: Bearer <jwt>` of `user_id`.
    Bearer { user_id: Uuid, token: String },
    /// `X-API-Key`.
    ApiKey(String),
    /// `X-Session-Token` of an anonymous session.
    Session(String),
    /// Raw headers, for credentials that are wrong on purpose.
    Headers(Vec<(&'static str, String)>),
}

impl Who {
    /// A new user with a bearer token.
    pub fn user() -> Who {
        Who::bearer(Uuid::new_v4(), false)
    }

    /// A new admin with a bearer token (`"role":"admin"`).
    pub fn admin() -> Who {
        Who::bearer(Uuid::new_v4(), true)
    }

    pub fn bearer(user_id: Uuid, admin: bool) -> Who {
        Who::Bearer {
            user_id,
            token: bearer_token(user_id, admin),
        }
    }

    /// The fixture admin key (user ...0001).
    pub fn admin_key() -> Who {
        Who::ApiKey(ADMIN_KEY.to_owned())
    }

    /// The fixture non-admin key (user ...0002).
    pub fn user_key() -> Who {
        Who::ApiKey(USER_KEY.to_owned())
    }

    pub fn header(name: &'static str, value: impl Into<String>) -> Who {
        Who::Headers(vec![(name, value.into())])
    }

    /// The user id this caller acts as, where the test knows it.
    pub fn user_id(&self) -> Option<Uuid> {
        match self {
            Who::Bearer { user_id, .. } => Some(*user_id),
            Who::ApiKey(key) if key == ADMIN_KEY => Some(ADMIN_KEY_USER.parse().expect("a UUID")),
            Who::ApiKey(key) if key == USER_KEY => Some(USER_KEY_USER.parse().expect("a UUID")),
            _ => None,
        }
    }

    fn apply(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Who::Nobody => request,
            Who::Bearer { token, .. } => request.bearer_auth(token),
            Who::ApiKey(key) => request.header("X-API-Key", key),
            Who::Session(token) => request.header("X-Session-Token", token),
            Who::Headers(headers) => headers
                .iter()
                .fold(request, |r, (name, value)| r.header(*name, value)),
        }
    }
}

/// What came back.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    /// `Value::Null` for an empty body.
    pub body: Value,
}

impl Reply {
    /// Panics unless the reply is the contract's error body with this status
    /// and code and a non-empty message; returns the message.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status, status, "status of {self:#?}");
        let object = self
            .body
            .as_object()
            .unwrap_or_else(|| panic!("a JSON object: {self:#?}"));
        assert_eq!(object.len(), 1, "only `error` at the top: {}", self.body);
        let error = self.body["error"]
            .as_object()
            .expect("`error` is an object");
        assert_eq!(error.len(), 2, "only code and message: {}", self.body);
        assert_eq!(self.body["error"]["code"], code, "{}", self.body);
        let message = self.body["error"]["message"]
            .as_str()
            .expect("a string message");
        assert!(!message.is_empty());
        assert_eq!(
            self.headers
                .get("content-type")
                .map(|v| v.to_str().expect("an ASCII header")),
            Some("application/json"),
            "errors are JSON"
        );
        message.to_owned()
    }

    /// [`Reply::assert_error`] for 422, checking the message names `field`.
    #[track_caller]
    pub fn assert_invalid(&self, field: &str) {
        let message = self.assert_error(422, "validation_error");
        assert!(
            message.starts_with(field) || message.contains(&format!("`{field}`")),
            "the message should name {field}: {message}"
        );
    }

    #[track_caller]
    pub fn assert_status(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "{self:#?}");
        &self.body
    }

    /// The `X-Session-Token` response header, if any.
    pub fn session_token(&self) -> Option<String> {
        self.headers
            .get("x-session-token")
            .map(|v| v.to_str().expect("ASCII token").to_owned())
    }
}

/// `method path` as `who`, with `body` as JSON when given.
pub async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    who: &Who,
    body: Option<Value>,
) -> Reply {
    let mut request = who.apply(app.client.request(method, app.url(path)));
    if let Some(body) = body {
        request = request.json(&body);
    }
    reply(request).await
}

/// `method path` with a raw body and content type (`None`: no header).
pub async fn call_raw(
    app: &TestApp,
    method: Method,
    path: &str,
    who: &Who,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> Reply {
    let mut request = who.apply(app.client.request(method, app.url(path)));
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    reply(request.body(body)).await
}

async fn reply(request: reqwest::RequestBuilder) -> Reply {
    let response = request
        .send()
        .await
        .expect("the request reaches the service");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("the whole body arrives");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("status {status}: body is not JSON ({e}): {bytes:?}"))
    };
    assert_ne!(status, 500, "client input must never produce a 500: {body}");
    Reply {
        status,
        headers,
        body,
    }
}

pub async fn get(app: &TestApp, path: &str, who: &Who) -> Reply {
    call(app, Method::GET, path, who, None).await
}

pub async fn post(app: &TestApp, path: &str, who: &Who, body: Value) -> Reply {
    call(app, Method::POST, path, who, Some(body)).await
}

pub async fn patch(app: &TestApp, path: &str, who: &Who, body: Value) -> Reply {
    call(app, Method::PATCH, path, who, Some(body)).await
}

pub async fn delete(app: &TestApp, path: &str, who: &Who) -> Reply {
    call(app, Method::DELETE, path, who, None).await
}

/// Creates a conversation as `who` and returns it.
pub async fn new_conversation(app: &TestApp, who: &Who, title: &str) -> Value {
    let reply = post(
        app,
        "/api/v1/conversations",
        who,
        serde_json::json!({ "title": title }),
    )
    .await;
    reply.assert_status(201).clone()
}

/// Posts a message as `who` and returns it.
pub async fn new_message(app: &TestApp, who: &Who, conversation_id: &str, content: &str) -> Value {
    let path = format!("/api/v1/conversations/{conversation_id}/messages");
    let reply = post(
        app,
        &path,
        who,
        serde_json::json!({ "role": "user", "content": content }),
    )
    .await;
    reply.assert_status(201).clone()
}

/// Every item of a paginated list, following `next_cursor` with `limit`.
pub async fn all_pages(app: &TestApp, path: &str, who: &Who, limit: u32) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let url = match &cursor {
            None => format!("{path}?limit={limit}"),
            Some(c) => format!("{path}?limit={limit}&cursor={c}"),
        };
        let page = get(app, &url, who).await;
        let body = page.assert_status(200);
        let got = body["items"].as_array().expect("items").clone();
        assert!(
            got.len() <= limit as usize,
            "a page holds at most `limit` items"
        );
        items.extend(got);
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return items,
        }
    }
    panic!("pagination did not end");
}
