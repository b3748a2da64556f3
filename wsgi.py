"""`gunicorn wsgi:app --threads 32`: the proxy with the normal config search.

Set CLAUDE_PROXY_CONFIG to point at a config file explicitly.
"""

from claude_proxy.cli import app_from_environment

app = app_from_environment()
