"""Metric sources that guardrails and facts read: one module per source (Prometheus; the generic HTTP JSON
source is the HTTP probe in probes/http_json.py). They observe and journal; the core judges."""
