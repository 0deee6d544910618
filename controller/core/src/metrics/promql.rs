//! Building PromQL from a policy's `traffic:` selectors and `sites:` labels.
//!
//! Every label value that comes from a policy is escaped as a PromQL string literal, so a
//! value can never close its matcher and inject PromQL (see [`escape_label_value`]).

use std::time::Duration;

use crate::metrics::source::Counted;
use crate::weights::Site;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How the two sites are told apart in the metrics (`sites:` in a policy).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SitesSpec {
    /// The label whose value names the site, e.g. `site`.
    pub label: String,
    /// The label value of the primary site.
    pub primary: String,
    /// The label value of the DR site.
    pub dr: String,
}

/// What "requests", "errors" and "latency" mean for a service (`traffic:` in a policy).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrafficSpec {
    /// A counter selector of all requests, e.g. `http_requests_total{service="checkout"}`.
    pub requests: String,
    /// Extra matchers that select the error requests among them, e.g. `status=~"5.."`.
    pub errors: String,
    /// The buckets of a latency histogram, e.g. `http_request_duration_seconds_bucket{...}`.
    pub latency: String,
}

/// A metric selector split into its metric name and its matchers.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    metric: String,
    matchers: Vec<String>,
}

impl Selector {
    /// Parses `name{a="b",c=~"d"}` or `name`; the matchers are kept as written.
    pub fn parse(text: &str) -> Result<Selector, String> {
        let t = text.trim();
        let (metric, rest) = match t.find('{') {
            Some(i) => (&t[..i], Some(&t[i..])),
            None => (t, None),
        };
        let metric = metric.trim();
        if !metric.is_empty() && !is_metric_name(metric) {
            return Err(format!(
                "`{metric}` is not a metric name; write a selector such as \
                 http_requests_total{{service=\"checkout\"}}"
            ));
        }
        let matchers = match rest {
            None => Vec::new(),
            Some(r) => {
                let inner = r
                    .strip_prefix('{')
                    .and_then(|r| r.strip_suffix('}'))
                    .ok_or_else(|| {
                        format!("`{t}` is not a selector: matchers must be one {{...}} at the end")
                    })?;
                split_matchers(inner)?
            }
        };
        if metric.is_empty() && matchers.is_empty() {
            return Err("the selector is empty; write e.g. http_requests_total".into());
        }
        Ok(Selector {
            metric: metric.to_string(),
            matchers,
        })
    }

    /// The selector with `extra` matchers appended.
    pub fn with(&self, extra: &[String]) -> String {
        let all: Vec<&str> = self
            .matchers
            .iter()
            .chain(extra.iter())
            .map(String::as_str)
            .collect();
        format!("{}{{{}}}", self.metric, all.join(","))
    }
}

/// Splits `a="b", c=~"d,e"` into matchers, honouring quotes; refuses unbalanced quotes and braces.
pub fn split_matchers(inner: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in inner.chars() {
        if let Some(q) = quote {
            cur.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' | '`' => {
                quote = Some(c);
                cur.push(c);
            }
            ',' => {
                push_matcher(&mut out, &cur)?;
                cur.clear();
            }
            '{' | '}' => {
                return Err(format!(
                    "`{inner}` has a brace outside quotes; write matchers like status=~\"5..\""
                ));
            }
            _ => cur.push(c),
        }
    }
    if quote.is_some() {
        return Err(format!("`{inner}` has an unclosed quote"));
    }
    push_matcher(&mut out, &cur)?;
    Ok(out)
}

fn push_matcher(out: &mut Vec<String>, m: &str) -> Result<(), String> {
    let m = m.trim();
    if m.is_empty() {
        return Ok(());
    }
    let name_end = m
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(m.len());
    let (name, rest) = m.split_at(name_end);
    let rest = rest.trim_start();
    let op_ok = ["=~", "!~", "!=", "="]
        .iter()
        .any(|op| rest.starts_with(op));
    if !is_label_name(name) || !op_ok {
        return Err(format!(
            "`{m}` is not a label matcher; write label=\"value\", label!=\"v\", label=~\"re\" or label!~\"re\""
        ));
    }
    out.push(m.to_string());
    Ok(())
}

/// Whether `s` is a valid Prometheus metric name.
pub fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Whether `s` is a valid Prometheus label name.
pub fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Escapes a value for use inside a double-quoted PromQL string literal (what matchers this
/// crate writes use): see [`escape_in_quotes`].
pub fn escape_label_value(v: &str) -> String {
    escape_in_quotes(v, '"')
}

/// Escapes a value for use inside a PromQL string literal opened with `quote` (`"` or `'`),
/// by PromQL's rules (Go's `strconv.Unquote`): a backslash and the opening quote are
/// escaped, the other quote is not (`\'` inside `"..."` is an "unknown escape sequence" to
/// Prometheus), line breaks and tabs become `\n`, `\r`, `\t`, any other control character
/// `\uXXXX`. So the value can never end its literal early. Inside a raw string (a
/// backtick) nothing can be escaped: the value is written as it is (policies refuse site
/// values with a backtick).
pub fn escape_in_quotes(v: &str, quote: char) -> String {
    if quote == '`' {
        return v.to_string();
    }
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Formats a window as a PromQL duration: `30s`, or `1500ms` when not whole seconds.
pub fn promql_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// A regex (as written inside a PromQL string) matching the `le` label values client
/// libraries write for a bucket edge: `0.25`, `0.250`, `1`, `1.0`.
pub fn le_regex(edge: f64) -> String {
    let text = format!("{edge}");
    if text.contains('.') {
        format!("{}0*", text.replace('.', "\\\\."))
    } else {
        format!("{text}(\\\\.0*)?")
    }
}

/// A regex (RE2, as Prometheus reads it: anchored at both ends) matching exactly the given
/// values: each with the regex metacharacters escaped, joined by `|`. Write it into a
/// matcher with [`escape_label_value`].
pub fn regex_any_of<'a>(values: impl IntoIterator<Item = &'a str>) -> String {
    let quote = |v: &str| {
        let mut out = String::with_capacity(v.len());
        for c in v.chars() {
            if "\\.+*?()|[]{}^$".contains(c) {
                out.push('\\');
            }
            out.push(c);
        }
        out
    };
    values.into_iter().map(quote).collect::<Vec<_>>().join("|")
}

/// Parses an `le` label value: a number, or `+Inf`.
pub fn parse_le(v: &str) -> Option<f64> {
    match v {
        "+Inf" | "Inf" | "inf" => Some(f64::INFINITY),
        _ => v.parse().ok(),
    }
}

/// Renders the PromQL of every measurement from a policy's `traffic:` and `sites:`.
#[derive(Debug, Clone)]
pub struct PromqlBuilder {
    requests: Selector,
    errors: Vec<String>,
    latency: Selector,
    sites: SitesSpec,
    service: String,
}

impl PromqlBuilder {
    /// Checks the selectors and the site label and builds the renderer.
    /// Errors name the `traffic.*` or `sites.*` field at fault.
    pub fn new(
        service: &str,
        traffic: &TrafficSpec,
        sites: &SitesSpec,
    ) -> Result<PromqlBuilder, (String, String)> {
        let requests =
            Selector::parse(&traffic.requests).map_err(|e| ("traffic.requests".to_string(), e))?;
        let latency =
            Selector::parse(&traffic.latency).map_err(|e| ("traffic.latency".to_string(), e))?;
        let errors =
            split_matchers(&traffic.errors).map_err(|e| ("traffic.errors".to_string(), e))?;
        if errors.is_empty() {
            return Err((
                "traffic.errors".into(),
                "no matcher given; write the matchers that select errors, e.g. status=~\"5..\""
                    .into(),
            ));
        }
        if !is_label_name(&sites.label) {
            return Err((
                "sites.label".into(),
                format!("`{}` is not a Prometheus label name", sites.label),
            ));
        }
        Ok(PromqlBuilder {
            requests,
            errors,
            latency,
            sites: sites.clone(),
            service: service.to_string(),
        })
    }

    /// The label value of a site, as written in the policy.
    pub fn site_value(&self, site: Site) -> &str {
        match site {
            Site::Primary => &self.sites.primary,
            Site::Dr => &self.sites.dr,
        }
    }

    fn site_matcher(&self, site: Site) -> String {
        format!(
            "{}=\"{}\"",
            self.sites.label,
            escape_label_value(self.site_value(site))
        )
    }

    /// Requests per second at a site over the window.
    pub fn request_rate(&self, site: Site, window: Duration) -> String {
        format!(
            "sum(rate({}[{}]))",
            self.requests.with(&[self.site_matcher(site)]),
            promql_duration(window)
        )
    }

    /// Requests served by a site over the window.
    pub fn request_count(&self, site: Site, window: Duration) -> String {
        format!(
            "sum(increase({}[{}]))",
            self.requests.with(&[self.site_matcher(site)]),
            promql_duration(window)
        )
    }

    /// Share of a site's requests that are errors. Missing error series count as zero errors;
    /// no requests at all gives an empty result or NaN, which is no data.
    pub fn error_ratio(&self, site: Site, window: Duration) -> String {
        let mut err = vec![self.site_matcher(site)];
        err.extend(self.errors.iter().cloned());
        let w = promql_duration(window);
        format!(
            "(sum(rate({}[{w}])) or vector(0)) / sum(rate({}[{w}]))",
            self.requests.with(&err),
            self.requests.with(&[self.site_matcher(site)]),
        )
    }

    /// A latency quantile of a site in seconds, from the histogram buckets.
    pub fn latency_quantile(&self, quantile: f64, site: Site, window: Duration) -> String {
        format!(
            "histogram_quantile({quantile}, sum by (le) (rate({}[{}])))",
            self.latency.with(&[self.site_matcher(site)]),
            promql_duration(window)
        )
    }

    /// The share of a site's requests that are bad, over the window.
    pub fn bad_share(&self, counted: Counted, site: Site, window: Duration) -> String {
        match counted {
            Counted::Errors => self.error_ratio(site, window),
            Counted::SlowerThan(edge) => {
                let w = promql_duration(window);
                format!(
                    "1 - sum(rate({}[{w}])) / sum(rate({}[{w}]))",
                    self.latency.with(&[
                        self.site_matcher(site),
                        format!("le=~\"{}\"", le_regex(edge))
                    ]),
                    self.latency
                        .with(&[self.site_matcher(site), "le=\"+Inf\"".to_string()]),
                )
            }
        }
    }

    /// The raw counter selectors a count reads: for errors, `(requests, errors)`; for slow
    /// requests, one selector of the histogram's `+Inf` bucket and the edge's bucket.
    pub fn count_selectors(&self, counted: Counted, site: Site) -> Vec<String> {
        match counted {
            Counted::Errors => {
                let mut err = vec![self.site_matcher(site)];
                err.extend(self.errors.iter().cloned());
                vec![
                    self.requests.with(&[self.site_matcher(site)]),
                    self.requests.with(&err),
                ]
            }
            Counted::SlowerThan(edge) => vec![self.latency.with(&[
                self.site_matcher(site),
                format!("le=~\"{}|\\\\+Inf\"", le_regex(edge)),
            ])],
        }
    }

    /// A policy's own PromQL with `{{site}}` and `{{service}}` replaced by escaped values.
    pub fn custom(&self, template: &str, site: Site) -> String {
        render_template(template, self.site_value(site), &self.service)
    }

    /// The PromQL of any measurement.
    pub fn render(&self, m: &crate::metrics::source::Measure) -> String {
        use crate::metrics::source::Measure;
        match m {
            Measure::RequestRate { site, window } => self.request_rate(*site, *window),
            Measure::RequestCount { site, window } => self.request_count(*site, *window),
            Measure::ErrorRatio { site, window } => self.error_ratio(*site, *window),
            Measure::LatencyQuantile {
                quantile,
                site,
                window,
            } => self.latency_quantile(*quantile, *site, *window),
            Measure::BadShare {
                counted,
                site,
                window,
            } => self.bad_share(*counted, *site, *window),
            Measure::Custom { template, site } => match site {
                Some(s) => self.custom(template, *s),
                None => self.custom_siteless(template),
            },
        }
    }

    /// A site-less query (preflight): only `{{service}}` is replaced.
    pub fn custom_siteless(&self, template: &str) -> String {
        fill(template, &[("{{service}}", &self.service)])
    }
}

/// Replaces `{{site}}` and `{{service}}` in a query template by label values escaped for
/// the string literal each placeholder stands in (double, single or backtick quotes; outside
/// any literal, as for double quotes).
pub fn render_template(template: &str, site: &str, service: &str) -> String {
    fill(template, &[("{{site}}", site), ("{{service}}", service)])
}

/// Replaces each placeholder by its value, escaped for the quotes around it.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut rest = template;
    while let Some(c) = rest.chars().next() {
        if !escaped && let Some((p, v)) = values.iter().find(|(p, _)| rest.starts_with(p)) {
            out.push_str(&escape_in_quotes(v, quote.unwrap_or('"')));
            rest = &rest[p.len()..];
            continue;
        }
        match quote {
            Some(_) if escaped => escaped = false,
            Some('`') if c == '`' => quote = None,
            Some(q) if c == '\\' && q != '`' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if matches!(c, '"' | '\'' | '`') => quote = Some(c),
            None => {}
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder(primary: &str) -> PromqlBuilder {
        PromqlBuilder::new(
            "checkout",
            &TrafficSpec {
                requests: r#"http_requests_total{service="checkout"}"#.into(),
                errors: r#"status=~"5..""#.into(),
                latency: r#"http_request_duration_seconds_bucket{service="checkout"}"#.into(),
            },
            &SitesSpec {
                label: "site".into(),
                primary: primary.into(),
                dr: "dr".into(),
            },
        )
        .unwrap()
    }

    #[test]
    fn renders_the_gate_queries() {
        let b = builder("primary");
        let w = Duration::from_secs(30);
        assert_eq!(
            b.error_ratio(Site::Primary, w),
            r#"(sum(rate(http_requests_total{service="checkout",site="primary",status=~"5.."}[30s])) or vector(0)) / sum(rate(http_requests_total{service="checkout",site="primary"}[30s]))"#
        );
        assert_eq!(
            b.latency_quantile(0.99, Site::Dr, w),
            r#"histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{service="checkout",site="dr"}[30s])))"#
        );
        assert_eq!(
            b.request_count(Site::Primary, Duration::from_millis(1500)),
            r#"sum(increase(http_requests_total{service="checkout",site="primary"}[1500ms]))"#
        );
    }

    #[test]
    fn regex_any_of_matches_exactly_the_values() {
        let re = regex_any_of(["127.0.0.1:9090", "a|b", r"x\y(1)"]);
        assert_eq!(re, r"127\.0\.0\.1:9090|a\|b|x\\y\(1\)");
        // As written into a matcher: backslashes doubled for the string literal.
        assert_eq!(
            format!(
                "instance=~\"{}\"",
                escape_label_value(&regex_any_of(["10.0.0.1:80"]))
            ),
            r#"instance=~"10\\.0\\.0\\.1:80""#
        );
    }

    #[test]
    fn label_values_cannot_escape_their_matcher() {
        let evil = r#"x"} or vector(1) or {a="\"#;
        let b = builder(evil);
        let q = b.request_rate(Site::Primary, Duration::from_secs(30));
        // The whole value stays inside one string literal: the only matchers are the
        // service's and the site's, and the literal ends where the selector does.
        let inner = q
            .strip_prefix("sum(rate(http_requests_total{")
            .and_then(|r| r.strip_suffix("}[30s]))"))
            .expect("selector shape kept");
        let parts = split_matchers(inner).expect("still valid matchers");
        assert_eq!(parts.len(), 2, "{parts:?}");
        assert_eq!(parts[1], r#"site="x\"} or vector(1) or {a=\"\\""#);
        // Templates get the same escaping, for either quote style.
        let t = render_template("max(q{site='{{site}}'})", "a'}) or vector(1", "s");
        assert_eq!(t, r#"max(q{site='a\'}) or vector(1'})"#);
    }

    #[test]
    fn quotes_are_escaped_by_promql_rules_for_the_literal_they_are_in() {
        // A single quote inside double quotes needs no escape (`\'` is an error there).
        let b = builder("o'brien");
        assert_eq!(
            b.request_rate(Site::Primary, Duration::from_secs(30)),
            r#"sum(rate(http_requests_total{service="checkout",site="o'brien"}[30s]))"#
        );
        assert_eq!(
            escape_label_value("a\\b\"c'd\ne\u{1}"),
            r#"a\\b\"c'd\ne\u0001"#
        );
        // In single quotes, the double quote needs none.
        assert_eq!(
            render_template(r#"q{a='{{site}}',b="{{site}}"}"#, r#"x'y"z"#, "s"),
            r#"q{a='x\'y"z',b="x'y\"z"}"#
        );
        // A quote escaped in the template does not end its literal.
        assert_eq!(
            render_template(r#"q{a="\"{{site}}"}"#, "x'y", "s"),
            r#"q{a="\"x'y"}"#
        );
        assert_eq!(
            render_template("q{a=`{{site}}`} + on() s{b='{{service}}'}", "p'q", "svc"),
            "q{a=`p'q`} + on() s{b='svc'}"
        );
        assert_eq!(
            b.custom_siteless(r#"up{service="{{service}}"}"#),
            r#"up{service="checkout"}"#
        );
    }

    #[test]
    fn selectors_are_checked() {
        assert!(Selector::parse("http_requests_total").is_ok());
        assert!(Selector::parse("rate(x[5m])").is_err());
        assert!(Selector::parse("x{a=\"b\"").is_err());
        assert!(Selector::parse("x{a}").is_err());
        assert!(
            split_matchers("status=~\"5..\", code!=\"404\"")
                .unwrap()
                .len()
                == 2
        );
        assert!(split_matchers("a=\"b").is_err());
        assert_eq!(
            Selector::parse("x{a=\"b,c\"}")
                .unwrap()
                .with(&["d=\"e\"".into()]),
            "x{a=\"b,c\",d=\"e\"}"
        );
    }
}
