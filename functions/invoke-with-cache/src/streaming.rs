//! invoke-stream: the gateway behind an endpoint that streams (a Lambda Function URL with
//! `InvokeMode: RESPONSE_STREAM`), through `lambda_http`'s streaming runtime.
//!
//! `POST /v1/converse-stream` streams Bedrock's events as server-sent events; `POST
//! /v1/chat/completions` and `POST /v1/messages` stream when their body says `stream: true`
//! and answer whole otherwise; `GET /v1/models` lists what `model` accepts. Everything up to
//! the first byte (routing, the cache, admission, fallback) decides the status, so a refusal is
//! an ordinary error response; after it, a failure is the stream's last event.
//!
//! The response's body is a channel: the handler returns as soon as the stream is open, and a
//! task forwards the events into the channel, then settles, stores and records before it
//! closes it (the invocation ends with the body). A caller that goes away closes the channel,
//! which stops the model's stream.

use std::convert::Infallible;
use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;
use gateway_core::compat::openai;
use gateway_core::metrics::InvocationMetrics;
use gateway_core::ports::Ports;
use gateway_core::service::{CallerGone, Gateway, Origin, StreamSink};
use gateway_core::stream::StreamEvent;
use gateway_core::usage::UsageSource;
use http_body_util::StreamBody;
use http_support::{Route, request_id};
use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Error, Request, Response};
use tokio::sync::mpsc;

use crate::dialect::Encoder;
use crate::{ApiError, CHAT_COMPLETIONS, MESSAGES, MODELS, caller_tenant, converse_call, dialect_of, emit_metrics};

const CONVERSE_STREAM: Route = Route::post("/v1/converse-stream");
const ROUTES: [Route; 4] = [CONVERSE_STREAM, CHAT_COMPLETIONS, MESSAGES, MODELS];
const FUNCTION_NAME: &str = "invoke-stream";
/// Server-sent events waiting for a slow reader before the model's stream is held back.
const BUFFERED_EVENTS: usize = 64;

type Frames = Pin<Box<dyn Stream<Item = Result<http_body::Frame<Bytes>, Infallible>> + Send>>;
/// The streamed response body: chunks as they are produced.
pub type StreamingBody = StreamBody<Frames>;

/// The streaming handler; it lives for the whole process (`&'static`), since the task that
/// forwards a stream outlives the call that opened it.
#[derive(Debug)]
pub struct StreamHandler<P> {
    gateway: Gateway<P>,
    log_request_bodies: bool,
}

/// The caller's end of the body channel.
struct Sse {
    sender: mpsc::Sender<Bytes>,
    encoder: Encoder,
}

impl StreamSink for Sse {
    async fn send(&mut self, event: &StreamEvent) -> Result<(), CallerGone> {
        let text = self.encoder.event(event);
        if text.is_empty() {
            return Ok(());
        }
        self.sender.send(Bytes::from(text)).await.map_err(|_| CallerGone)
    }
}

impl<P: Ports + 'static> StreamHandler<P> {
    pub fn new(gateway: Gateway<P>) -> Self {
        StreamHandler { gateway, log_request_bodies: false }
    }

    pub fn with_body_logging(mut self, enabled: bool) -> Self {
        http_support::announce_body_logging(enabled);
        self.log_request_bodies = enabled;
        self
    }

    /// Never fails: errors before the first byte are responses in the caller's dialect.
    pub async fn handle(&'static self, request: Request) -> Result<Response<StreamingBody>, Error> {
        let request_id = request_id(&request);
        http_support::log_body(self.log_request_bodies, &request, &request_id);
        let dialect = dialect_of(&request);
        Ok(match self.serve(&request, &request_id).await {
            Ok(response) => response,
            Err(error) => {
                if let Some(label) = error.metric_label() {
                    emit_metrics(&InvocationMetrics::from_error(label.as_str()), FUNCTION_NAME);
                }
                tracing::info!(
                    error = error.label().as_str(),
                    status = error.status().as_u16(),
                    request_id,
                    "request refused"
                );
                whole(error.into_dialect_response(dialect, &request_id))
            }
        })
    }

    async fn serve(&'static self, request: &Request, request_id: &str) -> Result<Response<StreamingBody>, ApiError> {
        let matched = http_support::select_route(request, &ROUTES)?;
        let tenant = caller_tenant(&self.gateway, request)?;
        let route = ROUTES[matched.index];
        if route == MODELS {
            let body = openai::models(self.gateway.catalog(), http_support::now_ms() / 1000);
            return Ok(whole(http_support::json_response(StatusCode::OK, &body, &[])));
        }
        let dialect = dialect_of(request);
        let parsed = dialect.parse(request.body().as_ref())?;
        let call = converse_call(&self.gateway, request, parsed.request, tenant)?;
        let origin = Origin { source: UsageSource::Online, request_id: request_id.to_owned() };
        let created = http_support::now_ms() / 1000;
        if route != CONVERSE_STREAM && !parsed.stream {
            let answer = self.gateway.converse_and_record(call, &origin).await?;
            emit_metrics(&InvocationMetrics::from_answer(&answer, self.gateway.catalog()), FUNCTION_NAME);
            let body = dialect.answer_body(&answer, request_id, created);
            let headers = crate::answer_headers(&answer);
            return Ok(whole(http_support::json_response(StatusCode::OK, &body, &crate::borrowed(&headers))));
        }
        let open = self.gateway.open_stream(call).await?;
        let encoder = Encoder::new(dialect, request_id, created, open.model_id(), parsed.include_usage);
        let cache = open.cache_result();
        let omitted = open.omitted().join(",");
        let (sender, receiver) = mpsc::channel::<Bytes>(BUFFERED_EVENTS);
        let request_id = request_id.to_owned();
        let catalog_owner = &self.gateway;
        tokio::spawn(async move {
            let mut sink = Sse { sender, encoder };
            let end = open.forward(&mut sink, &origin).await;
            emit_metrics(&InvocationMetrics::from_stream(&end, catalog_owner.catalog()), FUNCTION_NAME);
            if let Some(label) = end.ending.label() {
                tracing::warn!(error = label.as_str(), request_id, "stream failed after its first byte");
            }
            let Sse { sender, mut encoder } = sink;
            let tail = encoder.end(end, &request_id);
            if !tail.is_empty() {
                // The caller may have gone; there is nobody to tell then.
                let _ = sender.send(Bytes::from(tail)).await;
            }
        });
        let frames = futures_util::stream::unfold(receiver, |mut receiver| async move {
            let chunk = receiver.recv().await?;
            Some((Ok(http_body::Frame::data(chunk)), receiver))
        });
        let mut response = Response::new(StreamBody::new(Box::pin(frames) as Frames));
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert("x-cache", HeaderValue::from_static(cache.as_str()));
        if let Ok(value) = HeaderValue::from_str(&omitted)
            && !omitted.is_empty()
        {
            headers.insert(crate::SAMPLING_OMITTED, value);
        }
        Ok(response)
    }
}

/// A whole response as a one-chunk stream: a streaming function must stream every body.
fn whole(response: Response<Body>) -> Response<StreamingBody> {
    let (parts, body) = response.into_parts();
    let bytes = Bytes::copy_from_slice(body.as_ref());
    let frames = futures_util::stream::iter([Ok(http_body::Frame::data(bytes))]);
    Response::from_parts(parts, StreamBody::new(Box::pin(frames) as Frames))
}
