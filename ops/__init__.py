"""The operator's console: the scheduled jobs service, its metrics, and the console's parts.

``fraud ops run`` (:mod:`ops.cli`) is one long-running process that runs the platform's
periodic jobs on the schedule of ``params.yaml``'s ``ops`` section: label ingestion, the drift
check, the consistency check and a freshness probe (:mod:`ops.jobs`), each run logged, timed,
retried and exported on its own ``/metrics`` (:mod:`ops.metrics`, :mod:`ops.scheduler`).
Beside the code live the console's configuration: Prometheus scrape config and alert rules
(``ops/prometheus``) and the Grafana dashboard (``ops/grafana``). ``fraud ui ...`` starts the
web consoles locally (:mod:`ops.console`).
"""
