//! Middleware as plain tower services whose futures are not boxed: an
//! [`Around`] says what to do with the request before the rest of the stack
//! runs and with the response after it, and [`AroundLayer`] makes it a
//! layer. axum's `middleware::from_fn` would be shorter to write, but on
//! every request it clones and boxes the rest of the stack and boxes its own
//! future; at 1,000 connections about as many requests wait at once for a
//! pooled connection, each holding those boxes, and the service's CPU per
//! request grew with them (docs/benchmarks.md, issue 13). The work of dave's
//! middleware is synchronous, so nothing here needs an `async` block: the
//! future is the inner service's, wrapped.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use tracing::Span;

/// A middleware's two halves. Both run on the request's task, synchronously.
pub trait Around: Clone + Send + Sync + 'static {
    /// What the first half hands the second (timings, labels, guards).
    type Carry: Send + 'static;

    /// Looks at (and may change) the request. With a response, the rest of
    /// the stack is not called and that response goes to [`Around::after`].
    fn before(&self, request: &mut Request) -> (Self::Carry, Option<Response>);

    /// Shapes the response, whichever side made it.
    fn after(carry: Self::Carry, response: &mut Response);

    /// The span the rest of the stack runs in (entered on every poll), if
    /// the middleware opened one.
    fn span(_carry: &Self::Carry) -> Option<&Span> {
        None
    }
}

/// [`Around`] as a tower layer, for `Router::layer` or a `ServiceBuilder`.
#[derive(Debug, Clone)]
pub struct AroundLayer<A>(pub A);

impl<A: Clone, S> Layer<S> for AroundLayer<A> {
    type Service = AroundService<A, S>;

    fn layer(&self, inner: S) -> Self::Service {
        AroundService {
            around: self.0.clone(),
            inner,
        }
    }
}

/// The service [`AroundLayer`] wraps around the rest of the stack.
#[derive(Debug, Clone)]
pub struct AroundService<A, S> {
    around: A,
    inner: S,
}

impl<A, S> Service<Request> for AroundService<A, S>
where
    A: Around,
    S: Service<Request>,
    S::Response: IntoResponse,
    S::Error: Into<Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = AroundFuture<A, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let (carry, answer) = self.around.before(&mut request);
        let step = match answer {
            Some(response) => Step::Answered {
                response: Some(response),
            },
            None => Step::Inner {
                future: self.inner.call(request),
            },
        };
        AroundFuture {
            step,
            carry: Some(carry),
        }
    }
}

pin_project! {
    /// The inner service's future (or the early answer), then [`Around::after`].
    pub struct AroundFuture<A: Around, F> {
        #[pin]
        step: Step<F>,
        carry: Option<A::Carry>,
    }
}

pin_project! {
    #[project = StepProj]
    enum Step<F> {
        Inner { #[pin] future: F },
        Answered { response: Option<Response> },
    }
}

impl<A, F, R, E> Future for AroundFuture<A, F>
where
    A: Around,
    F: Future<Output = Result<R, E>>,
    R: IntoResponse,
    E: Into<Infallible>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let made = match this.step.project() {
            StepProj::Answered { response } => response.take(),
            StepProj::Inner { future } => {
                let _entered = this.carry.as_ref().and_then(A::span).map(Span::enter);
                let Poll::Ready(result) = future.poll(cx) else {
                    return Poll::Pending;
                };
                let Ok(response) = result.map_err(Into::<Infallible>::into);
                Some(response.into_response())
            }
        };
        let (Some(mut response), Some(carry)) = (made, this.carry.take()) else {
            panic!("AroundFuture polled after it completed");
        };
        A::after(carry, &mut response);
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{HeaderValue, StatusCode};
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    /// Answers 418 itself when asked to, else tags the request; either
    /// way the response says which path it took. It opens a span so the
    /// enter-on-poll path runs too.
    #[derive(Clone)]
    struct Tagger;

    impl Around for Tagger {
        type Carry = (Span, &'static str);

        fn before(&self, request: &mut Request) -> (Self::Carry, Option<Response>) {
            let span = tracing::info_span!("tagged");
            if request.uri().path() == "/refuse" {
                let answer = StatusCode::IM_A_TEAPOT.into_response();
                return ((span, "answered"), Some(answer));
            }
            request
                .headers_mut()
                .insert("x-before", HeaderValue::from_static("yes"));
            ((span, "called"), None)
        }

        fn after((_, how): Self::Carry, response: &mut Response) {
            response
                .headers_mut()
                .insert("x-after", HeaderValue::from_static(how));
        }

        fn span(carry: &Self::Carry) -> Option<&Span> {
            Some(&carry.0)
        }
    }

    async fn ask(path: &str) -> Response {
        let app = Router::new()
            .route(
                "/echo",
                get(|request: Request| async move {
                    request.headers()["x-before"].to_str().unwrap().to_owned()
                }),
            )
            .route("/refuse", get(|| async { "never here" }))
            .layer(AroundLayer(Tagger));
        let request = Request::get(path).body(Body::empty()).unwrap();
        app.oneshot(request).await.unwrap()
    }

    #[tokio::test]
    async fn both_halves_run_around_the_handler() {
        let response = ask("/echo").await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-after"], "called");
        let body = axum::body::to_bytes(response.into_body(), 64)
            .await
            .unwrap();
        assert_eq!(&body[..], b"yes", "the handler saw the request's change");
    }

    #[tokio::test]
    async fn an_early_answer_skips_the_handler_and_still_gets_the_second_half() {
        let response = ask("/refuse").await;
        assert_eq!(response.status(), StatusCode::IM_A_TEAPOT);
        assert_eq!(response.headers()["x-after"], "answered");
    }
}
