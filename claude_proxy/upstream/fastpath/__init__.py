"""Optional speed code that works inside http.client/urllib3 internals (see docs/internals-ledger.md)."""
