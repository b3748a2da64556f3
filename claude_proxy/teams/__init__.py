"""Teams: stored keys, limits, budgets and usage on an embedded SQLite store (issue 18).

Sits between pipeline and upstream; imports only config, routing, translate and errors.
"""
