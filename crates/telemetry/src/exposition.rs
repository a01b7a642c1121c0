//! Exposition formats: OpenMetrics (what `prometheus-client` writes) and the
//! classic Prometheus 0.0.4 text format (what older scrapers and `promtool
//! check metrics` parse). `/metrics` serves whichever the client asks for.

/// Content type of the OpenMetrics text format.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of the Prometheus 0.0.4 text format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// True when an `Accept` header prefers OpenMetrics.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

/// Rewrites OpenMetrics text as Prometheus 0.0.4 text: counters are declared
/// with their `_total` name, `info` becomes a gauge named `*_info`, and
/// `# UNIT`, `# EOF`, `_created` samples and exemplars are dropped.
pub fn openmetrics_to_prometheus(om: &str) -> String {
    let mut out = String::with_capacity(om.len());
    // (family name, renamed family name, type) of the family being copied.
    let mut counters: Vec<String> = Vec::new();
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            match kind {
                "counter" => {
                    counters.push(name.to_string());
                    out.push_str(&format!("# TYPE {name}_total counter\n"));
                }
                "info" => out.push_str(&format!("# TYPE {name}_info gauge\n")),
                "stateset" | "gaugehistogram" | "unknown" => {
                    out.push_str(&format!("# TYPE {name} untyped\n"))
                }
                _ => {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or(rest);
            // HELP precedes TYPE in OpenMetrics, so peek: counters are renamed
            // by looking up the TYPE line that follows.
            let renamed = next_type_suffix(om, name);
            out.push_str(&format!("# HELP {name}{renamed}{}\n", &rest[name.len()..]));
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let sample_name = line.split(['{', ' ']).next().unwrap_or("");
        if sample_name.ends_with("_created")
            && counters
                .iter()
                .any(|c| sample_name.strip_suffix("_created") == Some(c))
        {
            continue;
        }
        // Drop an exemplar (" # {...} value") if present.
        let sample = line.split(" # ").next().unwrap_or(line);
        out.push_str(sample);
        out.push('\n');
    }
    out
}

fn next_type_suffix(om: &str, name: &str) -> &'static str {
    let needle = format!("# TYPE {name} ");
    match om.lines().find_map(|l| l.strip_prefix(needle.as_str())) {
        Some("counter") => "_total",
        Some("info") => "_info",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_counters_info_and_units() {
        let om = "# HELP http_requests Requests.\n# TYPE http_requests counter\nhttp_requests_total{a=\"b\"} 3\nhttp_requests_created{a=\"b\"} 1.7e9\n# HELP x Build.\n# TYPE x info\nx_info{v=\"1\"} 1\n# HELP d_seconds D.\n# TYPE d_seconds histogram\n# UNIT d_seconds seconds\nd_seconds_sum 0.5\nd_seconds_count 1\nd_seconds_bucket{le=\"+Inf\"} 1 # {trace_id=\"x\"} 0.5\n# EOF\n";
        let p = openmetrics_to_prometheus(om);
        assert_eq!(
            p,
            "# HELP http_requests_total Requests.\n# TYPE http_requests_total counter\nhttp_requests_total{a=\"b\"} 3\n# HELP x_info Build.\n# TYPE x_info gauge\nx_info{v=\"1\"} 1\n# HELP d_seconds D.\n# TYPE d_seconds histogram\nd_seconds_sum 0.5\nd_seconds_count 1\nd_seconds_bucket{le=\"+Inf\"} 1\n"
        );
    }

    #[test]
    fn negotiates() {
        assert!(wants_openmetrics(Some(
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
        )));
        assert!(!wants_openmetrics(Some("text/plain")));
        assert!(!wants_openmetrics(None));
    }
}
