"""The sources wing: the external systems ETL Monitor reads (Prometheus, Elasticsearch).

- ``clients``: the data sources and their clients — every call records the source's health and
  turns any failure into ``SourceUnavailable``;
- ``kinds``: the detection rule kinds that query them (``promql_threshold``, ``es_error_count``),
  registered with the engine's kind registry (``incidents.kinds``) when the app is ready;
- ``captures``: statistics capture, source values stored as signals of a loader every bucket;
- ``services``: the writes (data sources, capture definitions) the admin, the API and
  ``apply_config`` share.
"""
