"""The one door out: the pooled requests session, retries, deadlines, typed error mapping and body reads.

`client.Upstream` is the only thing the pipeline calls. Everything that works inside urllib3 or
http.client internals for speed lives in `fastpath/`, behind one switch.
"""
