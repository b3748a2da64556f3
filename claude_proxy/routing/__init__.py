"""Which target serves a request: model names → targets and chains (`targets`), the per-request
decision and scenario precedence (`router`), and the per-process cool-down of failing providers.

Pure decisions over dicts; nothing here does I/O.
"""
