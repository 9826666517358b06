//! The client API's HTTP/1 server loop: axum's router on hyper, with a
//! deadline on every request's headers (`limits.header_timeout_secs`) and
//! on its body (`limits.body_timeout_secs`, from the end of the headers),
//! so a client that trickles its request (slowloris) is cut off long
//! before the idle deadline, which a byte every few seconds would keep
//! away.
//! Connections are admitted by the listener's [`Budget`](crate::conn::Budget)
//! and closed when idle; on shutdown the listener stops and connections
//! finish their request in flight.

use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::watch;
use tower::ServiceExt;

/// What a body whose deadline passed says (the API answers `408`).
pub const BODY_TIMED_OUT: &str = "request body not received in time";

/// A request body that fails once its deadline has passed.
struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    within: Duration,
}

impl http_body::Body for DeadlineBody {
    type Data = hyper::body::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            let within = self.within;
            return Poll::Ready(Some(Err(format!(
                "{BODY_TIMED_OUT} (limits.body_timeout_secs: {within:?})"
            )
            .into())));
        }
        Pin::new(&mut self.inner)
            .poll_frame(cx)
            .map(|frame| frame.map(|f| f.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Serves `app` on the connections `listener` accepts until `shutdown`
/// completes, then waits for the open connections to finish.
pub async fn serve<L>(
    mut listener: L,
    app: Router,
    header_timeout: Duration,
    body_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) where
    L: axum::serve::Listener,
{
    // hyper's header deadline also runs while a kept-alive connection waits
    // for its next request: say so, so that clients close it first.
    let keep_alive = axum::http::HeaderValue::from_str(&format!(
        "timeout={}",
        header_timeout.as_secs().saturating_sub(1).max(1)
    ))
    .expect("digits are a valid header value");
    let app = app.layer(axum::middleware::map_response(
        move |mut response: axum::response::Response| {
            let keep_alive = keep_alive.clone();
            async move {
                response.headers_mut().insert(
                    axum::http::header::HeaderName::from_static("keep-alive"),
                    keep_alive,
                );
                response
            }
        },
    ));
    // Dropped by every connection task when it ends: `closed` tells the
    // loop all are done.
    let (done_tx, done_rx) = watch::channel(());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    loop {
        let io = tokio::select! {
            (io, _addr) = listener.accept() => io,
            () = &mut shutdown => break,
        };
        let service =
            TowerToHyperService::new(app.clone().map_request(move |request: Request<Incoming>| {
                request.map(|inner| {
                    Body::new(DeadlineBody {
                        inner,
                        deadline: Box::pin(tokio::time::sleep(body_timeout)),
                        within: body_timeout,
                    })
                })
            }));
        let (mut stop, done) = (stop_rx.clone(), done_rx.clone());
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            let mut connection = pin!(
                builder
                    .serve_connection(TokioIo::new(io), service)
                    .with_upgrades()
            );
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!("client connection: {e}");
                    }
                }
                _ = stop.changed() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
            drop(done);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(done_rx);
    done_tx.closed().await;
}
