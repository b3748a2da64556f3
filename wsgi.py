"""`gunicorn wsgi:app --threads 32`: the proxy with the normal config search.

Set CLAUDE_PROXY_CONFIG to point at a config file explicitly.
"""

from claude_proxy.server.memory import defer_charset_detection

defer_charset_detection()  # a worker process of ours: ~3 MB less, see the function

from claude_proxy.cli.main import app_from_environment  # noqa: E402

app = app_from_environment()
