"""Passwords out of everything genreq shows: the one place that masks them.

The broker and database passwords (from GENREQ_BROKER_URL / GENREQ_DATABASE_URL or from
GENREQ_*_PASSWORD[_FILE], see genreq.config) reach the drivers and nothing else. Every
URL genreq shows goes through `url()`; free text that may quote one (an error message, a
log line, a traceback) goes through `text()`, which also masks the configured password
values themselves wherever they appear, in case a driver echoes one outside a URL.

Not named `secrets`: that would shadow the standard library's module for a script run
from inside this folder.
"""
from __future__ import annotations

import logging
import re
from urllib.parse import quote

MASK = "***"

# scheme://user:PASSWORD@  (the user may be empty: redis://:PASSWORD@host)
_USERINFO_PASSWORD = re.compile(
    r"(?P<head>\b[a-z][a-z0-9+.-]*://[^\s:/?#@]*:)(?P<password>[^\s@]*)@", re.IGNORECASE)
# ...?password=PASSWORD&...  (redis-py and libpq accept it in the query as well)
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&](?:password|passwd|pass)=)[^\s&#]*",
                             re.IGNORECASE)
# password=PASSWORD in a libpq keyword/value connection string
_KEYWORD_PASSWORD = re.compile(r"(?P<head>(?<![?&])\bpassword\s*=\s*)(?:'(?:[^'\\]|\\.)*'|[^\s']+)",
                               re.IGNORECASE)


def url(value: str) -> str:
    """`value` (a broker or database URL) with its password masked, for display."""
    return text(value)


def text(value: str, secrets: tuple[str, ...] | None = None) -> str:
    """`value` with every password masked: those inside URLs or connection strings, and
    each of `secrets` (default: the configured passwords, genreq.config.secrets())."""
    if secrets is None:
        from genreq import config

        secrets = config.secrets()
    # Longest first, so that a password containing another is masked whole; quoted too,
    # as the password appears inside a URL.
    forms = {form for x in secrets if x for form in (x, quote(x, safe=""), quote(x))}
    for secret in sorted(forms, key=len, reverse=True):
        value = value.replace(secret, MASK)
    value = _USERINFO_PASSWORD.sub(lambda m: m["head"] + MASK + "@", value)
    value = _QUERY_PASSWORD.sub(lambda m: m["head"] + MASK, value)
    return _KEYWORD_PASSWORD.sub(lambda m: m["head"] + MASK, value)


class RedactingFilter(logging.Filter):
    """A handler filter that masks passwords in every record it passes, whatever logger
    (genreq's, Celery's, kombu's, SQLAlchemy's) made it. Installed on the handlers of the
    CLI and of the worker's logging."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit the message: the handler reports it
            return True
        masked = text(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            # Format the traceback now, masked: handlers reuse exc_text when it is set.
            record.exc_text = text(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = text(record.exc_text)
        return True


def install(handlers: list[logging.Handler] | None = None) -> None:
    """Put a RedactingFilter on `handlers` (default: the root logger's), once each."""
    for handler in logging.getLogger().handlers if handlers is None else handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
