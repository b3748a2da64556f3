"""How one request flows, framework-free: validate → route → translate → upstream → reply.

`proxy.Proxy` is the facade the web edge calls; `validate` holds the request schemas, `journal`
the JSONL request log and `metrics` the Prometheus observer. Nothing here imports Flask.
"""
