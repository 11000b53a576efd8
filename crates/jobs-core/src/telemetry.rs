//! Telemetry: the tracing subscriber (text or JSON logs), optional OTLP trace export, and
//! W3C trace-context propagation through queue messages.
//!
//! Every binary calls [`init`] once at start and keeps the returned [`TelemetryGuard`] alive
//! until exit; dropping it flushes spans that are still buffered. The propagator is always
//! the W3C one, so a `traceparent` travels in each work item even when nothing exports.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, TelemetryConfig};
use crate::envelope::TraceContext;

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("could not build the OTLP exporter for {endpoint}: {source}")]
    Exporter {
        endpoint: String,
        source: opentelemetry_otlp::ExporterBuildError,
    },
    #[error("a global tracing subscriber is already installed: {0}")]
    AlreadyInstalled(#[from] tracing_subscriber::util::TryInitError),
    #[error("invalid log filter: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
}

/// Keeps the trace pipeline alive; dropping it flushes and shuts the exporter down.
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("offload: flushing traces at exit failed: {e}");
        }
    }
}

/// Installs the global subscriber described by `cfg`.
///
/// Call it before starting the Tokio runtime: the OTLP exporter uses a blocking HTTP client
/// on its own thread, which must not be created or dropped inside async code.
pub fn init(cfg: &TelemetryConfig) -> Result<TelemetryGuard, TelemetryError> {
    let (subscriber, guard) = subscriber(cfg)?;
    subscriber.try_init()?;
    Ok(guard)
}

/// Builds the subscriber without installing it (tests install it for one scope).
pub fn subscriber(
    cfg: &TelemetryConfig,
) -> Result<
    (
        impl tracing::Subscriber + Send + Sync + 'static,
        TelemetryGuard,
    ),
    TelemetryError,
> {
    opentelemetry::global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
    ]));
    let filter = EnvFilter::try_new(&cfg.log_filter)?;
    let fmt = match cfg.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer().with_target(true).boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .boxed(),
    };

    let provider = if cfg.otlp_endpoint.is_empty() {
        None
    } else {
        use opentelemetry_otlp::WithExportConfig;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(format!(
                "{}/v1/traces",
                cfg.otlp_endpoint.trim_end_matches('/')
            ))
            .build()
            .map_err(|source| TelemetryError::Exporter {
                endpoint: cfg.otlp_endpoint.clone(),
                source,
            })?;
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(cfg.service_name.clone())
            .build();
        Some(
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource)
                .build(),
        )
    };
    let otel = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer(cfg.service_name.clone())));

    let subscriber = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel);
    Ok((subscriber, TelemetryGuard { provider }))
}

impl TraceContext {
    /// The W3C context of the current span, to put into an outgoing message.
    pub fn current() -> Self {
        let cx = tracing::Span::current().context();
        let mut carrier: HashMap<String, String> = HashMap::new();
        opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut carrier));
        Self {
            traceparent: carrier.remove("traceparent"),
            tracestate: carrier.remove("tracestate"),
        }
    }

    /// Makes `span` a child of the context carried by a message, so the work of one job is
    /// one trace across processes. A missing or malformed context leaves `span` a root.
    pub fn attach_to(&self, span: &tracing::Span) {
        let mut carrier: HashMap<String, String> = HashMap::new();
        if let Some(tp) = &self.traceparent {
            carrier.insert("traceparent".into(), tp.clone());
        }
        if let Some(ts) = &self.tracestate {
            carrier.insert("tracestate".into(), ts.clone());
        }
        let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&carrier));
        let _ = span.set_parent(cx);
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;

    use super::*;

    /// A one-request HTTP server on loopback: returns the request line and body size.
    fn collector() -> (String, std::thread::JoinHandle<(String, usize)>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut length = 0;
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap();
                if header.trim().is_empty() {
                    break;
                }
                if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let mut stream = stream;
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .unwrap();
            (request_line.trim().to_owned(), body.len())
        });
        (url, handle)
    }

    #[test]
    fn spans_are_exported_and_trace_context_travels_between_spans() {
        let (endpoint, server) = collector();
        let cfg = TelemetryConfig {
            log_format: LogFormat::Json,
            log_filter: "info".into(),
            service_name: "offload-test".into(),
            otlp_endpoint: endpoint,
        };
        let (subscriber, guard) = subscriber(&cfg).unwrap();
        let (sent, received) = tracing::subscriber::with_default(subscriber, || {
            let submit = tracing::info_span!("submit");
            let sent = submit.in_scope(TraceContext::current);
            // As a worker would: a new root span, attached to the message's context.
            let process = tracing::info_span!(parent: None, "process");
            sent.attach_to(&process);
            let received = process.in_scope(TraceContext::current);
            (sent, received)
        });
        drop(guard); // flushes the batch to the collector

        let trace_id = |tc: &TraceContext| tc.traceparent.as_deref().unwrap()[3..35].to_owned();
        assert_eq!(
            trace_id(&sent),
            trace_id(&received),
            "{sent:?} / {received:?}"
        );
        assert_ne!(
            sent.traceparent, received.traceparent,
            "the child has its own span id"
        );
        let (request_line, body) = server.join().unwrap();
        assert_eq!(request_line, "POST /v1/traces HTTP/1.1");
        assert!(body > 0);
    }

    #[test]
    fn a_message_without_context_starts_a_new_trace() {
        let cfg = TelemetryConfig {
            log_format: LogFormat::Text,
            log_filter: "info".into(),
            service_name: "offload-test".into(),
            otlp_endpoint: String::new(),
        };
        let (subscriber, _guard) = subscriber(&cfg).unwrap();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("process");
            TraceContext::default().attach_to(&span);
            TraceContext {
                traceparent: Some("garbage".into()),
                tracestate: None,
            }
            .attach_to(&span);
        });
    }
}
