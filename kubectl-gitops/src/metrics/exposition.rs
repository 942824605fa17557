//! One scrape: the followed namespaces' state as metric families, encoded by the Prometheus
//! project's client (`prometheus-client`) in the Prometheus text format (0.0.4) or in
//! OpenMetrics, whichever the scraper prefers. The families are written by a collector from
//! the state at scrape time, so a namespace or revision that is gone leaves no stale series.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use super::drift::Checked;
use super::members::Health;
use crate::outcome::{self, Kind};
use crate::record::Meta;

pub const PREFIX: &str = "kubectl_gitops";

/// The exposition formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`.
    Prometheus,
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
}

const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

impl Format {
    /// The format an `Accept` header prefers: OpenMetrics when it ranks it above plain text
    /// (Prometheus asks for both, OpenMetrics first), else the Prometheus text format.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let mut openmetrics = 0.0_f32;
        let mut text = 0.0_f32;
        for part in accept.unwrap_or_default().split(',') {
            let mut params = part.split(';').map(str::trim);
            let media = params.next().unwrap_or_default().to_ascii_lowercase();
            let q = params
                .filter_map(|p| p.strip_prefix("q="))
                .find_map(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            match media.as_str() {
                "application/openmetrics-text" => openmetrics = openmetrics.max(q),
                "text/plain" | "text/*" | "*/*" => text = text.max(q),
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics > text {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }
}

/// What one followed namespace looks like at scrape time.
#[derive(Debug, Clone)]
pub struct Sample {
    pub namespace: String,
    pub current: Option<Meta>,
    pub last_success: Option<Meta>,
    pub drift: Option<Checked>,
    pub health: Option<Health>,
    pub locked: bool,
}

/// The scrape: the namespaces' families, the exporter's error counter and its build.
pub fn encode(samples: Vec<Sample>, errors: &Counter, format: Format) -> (String, &'static str) {
    let mut registry = Registry::with_prefix(PREFIX);
    registry.register_collector(Box::new(Namespaces(samples)));
    registry.register(
        "scrape_errors",
        "Errors of this exporter: watches, revision record reads, drift computations",
        errors.clone(),
    );
    registry.register(
        "build",
        "The kubectl-gitops build of this exporter",
        Info::new(vec![("version", shared::VERSION)]),
    );
    let mut out = String::new();
    let content_type = match format {
        Format::Prometheus => {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
                .expect("writing to a String cannot fail");
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE
        }
        Format::OpenMetrics => {
            prometheus_client::encoding::text::encode(&mut out, &registry)
                .expect("writing to a String cannot fail");
            OPENMETRICS_CONTENT_TYPE
        }
    };
    (out, content_type)
}

#[derive(Debug)]
struct Namespaces(Vec<Sample>);

type Labels = Vec<(&'static str, String)>;

/// Seconds since the epoch of a record's `time` (RFC 3339, UTC).
fn seconds(meta: &Meta) -> Option<f64> {
    let t: jiff::Timestamp = meta.time.parse().ok()?;
    Some(t.as_millisecond() as f64 / 1000.0)
}

impl Namespaces {
    fn labels(s: &Sample, extra: &[(&'static str, &str)]) -> Labels {
        let mut l = vec![("namespace", s.namespace.clone())];
        l.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        l
    }
}

/// One gauge family; left out when it has no sample.
fn gauge<V: prometheus_client::encoding::EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    rows: Vec<(Labels, V)>,
) -> std::fmt::Result {
    if rows.is_empty() {
        return Ok(());
    }
    let mut family = encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    for (labels, value) in rows {
        family.encode_family(&labels)?.encode_gauge(&value)?;
    }
    Ok(())
}

impl Collector for Namespaces {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let samples = &self.0;
        let revisions: Vec<Labels> = samples
            .iter()
            .filter_map(|s| {
                let m = s.current.as_ref()?;
                // As history's SIGNED BY: the signers, `skipped` or `no policy`; empty for a
                // record written before signed deploys.
                let signed_by = m
                    .signature
                    .as_ref()
                    .map(|sig| sig.short())
                    .unwrap_or_default();
                Some(Self::labels(
                    s,
                    &[
                        ("revision", &m.revision.to_string()),
                        ("tag", &m.tag),
                        ("commit", &m.commit),
                        ("outcome", &m.outcome),
                        ("signed_by", &signed_by),
                    ],
                ))
            })
            .collect();
        if !revisions.is_empty() {
            let mut family = encoder.encode_descriptor(
                "revision",
                "The newest revision record of the namespace (kubectl gitops history), always 1.",
                None,
                MetricType::Info,
            )?;
            for labels in &revisions {
                family.encode_info(labels)?;
            }
        }
        let with_record = || {
            samples
                .iter()
                .filter_map(|s| Some((s, s.current.as_ref()?)))
        };
        gauge(
            &mut encoder,
            "last_sync_timestamp",
            "When the newest revision record was written (a sync or revert, whatever its outcome).",
            Some(&Unit::Seconds),
            with_record()
                .filter_map(|(s, m)| Some((Self::labels(s, &[]), seconds(m)?)))
                .collect(),
        )?;
        gauge(
            &mut encoder,
            "last_sync_success",
            "1 if the newest revision succeeded (a sync or a revert), 0 if it failed, was \
             interrupted or rolled back.",
            None,
            with_record()
                .map(|(s, m)| {
                    let ok = outcome::classify(&m.outcome) == Kind::Succeeded;
                    (Self::labels(s, &[]), i64::from(ok))
                })
                .collect(),
        )?;
        gauge(
            &mut encoder,
            "last_successful_sync_timestamp",
            "When the newest successful revision record kept in the namespace was written.",
            Some(&Unit::Seconds),
            samples
                .iter()
                .filter_map(|s| Some((Self::labels(s, &[]), seconds(s.last_success.as_ref()?)?)))
                .collect(),
        )?;
        let mut drift_rows = Vec::new();
        let mut checked_rows = Vec::new();
        for s in samples {
            let Some(c) = &s.drift else { continue };
            let d = c.drift;
            for (kind, n) in [
                ("changed", d.changed),
                ("missing", d.missing),
                ("extra", d.extra),
                ("unowned", d.unowned),
            ] {
                drift_rows.push((Self::labels(s, &[("kind", kind)]), n as i64));
            }
            checked_rows.push((Self::labels(s, &[]), c.at));
        }
        gauge(
            &mut encoder,
            "drift_objects",
            "Objects that differ from the current revision (kubectl gitops status): changed, \
             missing, extra (ours, not in the revision), unowned (no ApplySet claims them).",
            None,
            drift_rows,
        )?;
        gauge(
            &mut encoder,
            "drift_checked_timestamp",
            "When drift_objects was computed.",
            Some(&Unit::Seconds),
            checked_rows,
        )?;
        let mut health_rows = Vec::new();
        for s in samples {
            let Some(h) = s.health else { continue };
            for (status, n) in [
                ("ready", h.ready),
                ("in_progress", h.in_progress),
                ("failed", h.failed),
            ] {
                health_rows.push((Self::labels(s, &[("status", status)]), n as i64));
            }
        }
        gauge(
            &mut encoder,
            "health_objects",
            "Objects of the current revision by health, judged as kubectl gitops status judges \
             it; missing objects are failed.",
            None,
            health_rows,
        )?;
        gauge(
            &mut encoder,
            "namespace_locked",
            "1 while a sync or revert holds the namespace's Lease kubectl-gitops-lock.",
            None,
            samples
                .iter()
                .map(|s| (Self::labels(s, &[]), i64::from(s.locked)))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::drift::Drift;

    fn meta(revision: u64, outcome: &str) -> Meta {
        Meta {
            revision,
            tag: "deploy/dev/20250102T030405Z".into(),
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
            time: "2025-01-02T03:04:05Z".into(),
            user: "ann".into(),
            outcome: outcome.into(),
            objects: vec![],
            object_count: None,
            objects_gz: None,
            parts: 1,
            reverted_to: None,
            signature: None,
            hooks: vec![],
            rolled_back_to: None,
        }
    }

    fn sample() -> Sample {
        Sample {
            namespace: "shop".into(),
            current: Some(meta(5, "failed: Deployment.apps/shop/web: \"quoted\"")),
            last_success: Some(meta(4, "succeeded")),
            drift: Some(Checked {
                revision: 5,
                drift: Drift {
                    changed: 1,
                    missing: 0,
                    extra: 2,
                    unowned: 0,
                },
                at: 1735787045.5,
            }),
            health: Some(Health {
                ready: 3,
                in_progress: 0,
                failed: 1,
            }),
            locked: true,
        }
    }

    #[test]
    fn the_prometheus_text_has_every_family_with_its_labels() {
        let (text, content_type) = encode(vec![sample()], &Counter::default(), Format::Prometheus);
        assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
        for line in [
            "# TYPE kubectl_gitops_revision_info gauge",
            "kubectl_gitops_revision_info{namespace=\"shop\",revision=\"5\",tag=\"deploy/dev/20250102T030405Z\",commit=\"0123456789abcdef0123456789abcdef01234567\",outcome=\"failed: Deployment.apps/shop/web: \\\"quoted\\\"\",signed_by=\"\"} 1",
            "kubectl_gitops_last_sync_timestamp_seconds{namespace=\"shop\"} 1735787045.0",
            "kubectl_gitops_last_sync_success{namespace=\"shop\"} 0",
            "kubectl_gitops_last_successful_sync_timestamp_seconds{namespace=\"shop\"} 1735787045.0",
            "kubectl_gitops_drift_objects{namespace=\"shop\",kind=\"changed\"} 1",
            "kubectl_gitops_drift_objects{namespace=\"shop\",kind=\"extra\"} 2",
            "kubectl_gitops_drift_objects{namespace=\"shop\",kind=\"unowned\"} 0",
            "kubectl_gitops_drift_checked_timestamp_seconds{namespace=\"shop\"} 1735787045.5",
            "kubectl_gitops_health_objects{namespace=\"shop\",status=\"ready\"} 3",
            "kubectl_gitops_health_objects{namespace=\"shop\",status=\"in_progress\"} 0",
            "kubectl_gitops_health_objects{namespace=\"shop\",status=\"failed\"} 1",
            "kubectl_gitops_namespace_locked{namespace=\"shop\"} 1",
            "# TYPE kubectl_gitops_scrape_errors_total counter",
            "kubectl_gitops_scrape_errors_total 0",
            &format!(
                "kubectl_gitops_build_info{{version=\"{}\"}} 1",
                shared::VERSION
            ),
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
    }

    #[test]
    fn openmetrics_has_units_types_and_the_end_marker() {
        let (text, content_type) = encode(vec![sample()], &Counter::default(), Format::OpenMetrics);
        assert!(content_type.starts_with("application/openmetrics-text"));
        assert!(
            text.contains("# TYPE kubectl_gitops_revision info\n"),
            "{text}"
        );
        assert!(
            text.contains("# UNIT kubectl_gitops_last_sync_timestamp_seconds seconds\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn a_namespace_without_records_only_says_whether_it_is_locked() {
        let s = Sample {
            namespace: "empty".into(),
            current: None,
            last_success: None,
            drift: None,
            health: None,
            locked: false,
        };
        let (text, _) = encode(vec![s], &Counter::default(), Format::Prometheus);
        let mut series: Vec<String> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_string)
            .collect();
        series.sort();
        assert_eq!(
            series,
            [
                format!(
                    "kubectl_gitops_build_info{{version=\"{}\"}} 1",
                    shared::VERSION
                ),
                "kubectl_gitops_namespace_locked{namespace=\"empty\"} 0".to_string(),
                "kubectl_gitops_scrape_errors_total 0".to_string(),
            ],
            "{text}"
        );
    }

    #[test]
    fn openmetrics_is_chosen_only_when_preferred() {
        let prometheus = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,\
            application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;\
            escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text")),
            Format::OpenMetrics
        );
        assert_eq!(Format::negotiate(Some("text/plain")), Format::Prometheus);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Prometheus);
        assert_eq!(Format::negotiate(None), Format::Prometheus);
        assert_eq!(
            Format::negotiate(Some("text/plain;q=0.9, application/openmetrics-text;q=0.5")),
            Format::Prometheus
        );
    }
}
