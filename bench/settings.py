"""The service's own settings plus what only the benchmark needs.

The baseline endpoint and the per-request SQL query counter exist here and nowhere else, so
production never serves them.
"""

from fluxomail.settings import *  # noqa: F403
from fluxomail.settings import MIDDLEWARE

ROOT_URLCONF = "bench.urls"
# Outermost, so that it counts every query of the request, the middleware's own included.
MIDDLEWARE = ["bench.middleware.QueryCountMiddleware", *MIDDLEWARE]
