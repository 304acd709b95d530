"""The ASGI application: `uvicorn fluxomail.asgi:application` serves the event stream (and, if
routed there, the whole API). See the README's "Running in production".

- Each ASGI request runs its database work in a thread of its own, so a persistent connection
  would outlive the request only to be dropped by the garbage collector: connections are closed
  at the end of each request (DATABASE_CONN_MAX_AGE defaults to 0 here; an explicit value wins).
- uvicorn's access and error logs name the request's path and query: the same redaction as
  Django's own logs (fluxomail/log_redaction.py), so a `token` never reaches them.
"""

import os

from django.core.asgi import get_asgi_application

from fluxomail import log_redaction

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fluxomail.settings")
os.environ.setdefault("DATABASE_CONN_MAX_AGE", "0")
application = get_asgi_application()
log_redaction.install("uvicorn.access", "uvicorn.error")
