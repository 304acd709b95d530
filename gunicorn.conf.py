"""gunicorn's settings for Fluxomail, read from the working directory when gunicorn starts in a
checkout (flags on the command line take precedence).

limit_request_line: GET /api/v1/sends takes percent-encoded filters (`to` up to 320 characters,
`cursor`, `from`, `until`), which can pass gunicorn's default of 4094 bytes with non-ASCII
values; 8190 is gunicorn's largest and what nginx allows by default. Longer lines are refused by
gunicorn itself with 414 before the application sees them.

logger_class: gunicorn's access and error logs with query-string credentials redacted
(`?token=…` of the event stream; fluxomail/log_redaction.py), whatever the log format.
"""

from gunicorn.glogging import Logger

from fluxomail.log_redaction import install

limit_request_line = 8190
timeout = 30
# The access log names the path without its query string (%(U)s, not %(r)s): query strings carry
# credentials (unsubscribe and preference tokens, the stream's `token`). The request id is the
# key to the application's own log lines.
access_log_format = '%(h)s - - %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s "%({x-request-id}o)s" %(M)sms'


class RedactingLogger(Logger):
    def setup(self, cfg) -> None:
        super().setup(cfg)
        install(self.error_log.name, self.access_log.name)


logger_class = RedactingLogger
