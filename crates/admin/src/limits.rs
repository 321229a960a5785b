//! Limits of the gRPC listener: the largest message a call may send, and
//! the calls it serves at once ([`CallLimit`], a tower layer that answers
//! RESOURCE_EXHAUSTED beyond them rather than queueing without bound).
//! The per-token write rate is [`crate::Auth::limit_token_writes`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use tokio::sync::Semaphore;
use tonic::Status;
use tonic::codegen::http;

/// What the gRPC listener accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request message, in bytes (a larger one is refused with
    /// OUT_OF_RANGE naming the limit, tonic's answer).
    pub max_message_bytes: usize,
    /// Most calls being served at once, over every connection; one more
    /// is answered RESOURCE_EXHAUSTED at once. A streaming call counts
    /// until its answer stream starts.
    pub max_concurrent_calls: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 4 << 20,
            max_concurrent_calls: 1024,
        }
    }
}

/// What the gRPC listener counts, for the node's metrics.
#[derive(Debug, Default)]
pub struct CallCounts {
    /// Calls served (answered, or their answer stream started).
    pub served: AtomicU64,
    /// Calls refused for [`Limits::max_concurrent_calls`].
    pub refused: AtomicU64,
    /// Calls in flight now.
    pub in_flight: AtomicU64,
}

/// The layer that keeps the calls in flight under a cap.
#[derive(Clone)]
pub(crate) struct CallLimit {
    permits: Arc<Semaphore>,
    max: usize,
    counts: Arc<CallCounts>,
}

impl CallLimit {
    pub(crate) fn new(max: usize, counts: Arc<CallCounts>) -> Self {
        let max = max.max(1);
        Self {
            permits: Arc::new(Semaphore::new(max)),
            max,
            counts,
        }
    }
}

impl<S> tower::Layer<S> for CallLimit {
    type Service = Limited<S>;

    fn layer(&self, inner: S) -> Limited<S> {
        Limited {
            inner,
            limit: self.clone(),
        }
    }
}

/// A service behind [`CallLimit`].
#[derive(Clone)]
pub(crate) struct Limited<S> {
    inner: S,
    limit: CallLimit,
}

type Answer<B, E> = Pin<Box<dyn Future<Output = Result<http::Response<B>, E>> + Send>>;

impl<S, Req, B> tower::Service<http::Request<Req>> for Limited<S>
where
    S: tower::Service<http::Request<Req>, Response = http::Response<B>>,
    S::Future: Send + 'static,
    B: Default + Send + 'static,
{
    type Response = http::Response<B>;
    type Error = S::Error;
    type Future = Answer<B, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Req>) -> Self::Future {
        match self.limit.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let answer = self.inner.call(request);
                let counts = self.limit.counts.clone();
                counts.in_flight.fetch_add(1, Ordering::Relaxed);
                Box::pin(async move {
                    let answer = answer.await;
                    drop(permit);
                    counts.in_flight.fetch_sub(1, Ordering::Relaxed);
                    counts.served.fetch_add(1, Ordering::Relaxed);
                    answer
                })
            }
            Err(_) => {
                let max = self.limit.max;
                self.limit.counts.refused.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(max, "gRPC call refused: too many calls in flight");
                Box::pin(async move {
                    Ok(Status::resource_exhausted(format!(
                        "the node is serving its most calls at once ({max}, [grpc] \
                         max_concurrent_calls); retry shortly"
                    ))
                    .into_http())
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{Layer, Service, ServiceExt};

    /// A service whose calls finish when told to.
    #[derive(Clone)]
    struct Held(Arc<tokio::sync::Notify>);

    impl Service<http::Request<()>> for Held {
        type Response = http::Response<String>;
        type Error = std::convert::Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            let done = self.0.clone();
            Box::pin(async move {
                done.notified().await;
                Ok(http::Response::new("answered".to_owned()))
            })
        }
    }

    #[tokio::test]
    async fn a_call_beyond_the_cap_is_refused_and_a_freed_slot_serves_again() {
        let done = Arc::new(tokio::sync::Notify::new());
        let counts = Arc::new(CallCounts::default());
        let mut service = CallLimit::new(1, counts.clone()).layer(Held(done.clone()));
        let first = service.ready().await.unwrap().call(http::Request::new(()));
        let refused = service
            .ready()
            .await
            .unwrap()
            .call(http::Request::new(()))
            .await
            .unwrap();
        let status = Status::from_header_map(refused.headers()).unwrap();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(status.message().contains("max_concurrent_calls"));
        done.notify_one();
        assert_eq!(first.await.unwrap().body(), "answered");
        let again = service.ready().await.unwrap().call(http::Request::new(()));
        done.notify_one();
        assert_eq!(again.await.unwrap().body(), "answered");
        assert_eq!(counts.served.load(Ordering::Relaxed), 2);
        assert_eq!(counts.refused.load(Ordering::Relaxed), 1);
        assert_eq!(counts.in_flight.load(Ordering::Relaxed), 0);
    }
}
