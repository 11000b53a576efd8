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
pub fn init(cfg: &TelemetryConfig) -> Result<TelemetryGuard, TelemetryError> {
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

    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()?;
    Ok(TelemetryGuard { provider })
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
