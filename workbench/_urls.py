"""Showing URLs without their secrets.

Driver URLs may carry a password (``postgresql://user:secret@host/db``) or secrets in their
query (``kafka://host:9092?sasl.password=secret``). Everything that shows or logs a URL (reprs,
``Run``'s text and HTML, the live view, error messages) passes it through :func:`redact_url`.

>>> redact_url("postgresql://alice:s3cret@db:5432/shop")
'postgresql://alice:***@db:5432/shop'
>>> redact_url("kafka://h:9092?sasl.password=s3cret&acks=all")
'kafka://h:9092?sasl.password=***&acks=all'
>>> redact_text("config {'sasl.password': 's3cret', 'acks': 'all'}")
"config {'sasl.password': '***', 'acks': 'all'}"
"""

from __future__ import annotations

import re

__all__ = ["SECRET_PARAMS", "redact_text", "redact_url"]

#: query parameters whose values are secrets (matched case-insensitively, as substrings of the
#: parameter name: ``sasl.password``, ``ssl.key.password``, ``sasl.oauthbearer.client.secret``...)
SECRET_PARAMS = ("password", "passwd", "secret", "token", "credential", "sasl.jaas.config",
                 "api.key", "apikey", "private.key")

_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:/?#@\s]*):"
                       r"(?P<password>[^@/?#\s]*)@")
_PARAM = re.compile(r"(?P<name>[?&;\s](?P<key>[A-Za-z0-9_.\-]+)=)(?P<value>[^&;\s'\"]*)")
#: ``'key': 'value'`` entries of a printed config dict
_ITEM = re.compile(r"(?P<name>(?P<q>['\"])(?P<key>[A-Za-z0-9_.\-]+)(?P=q)\s*:\s*)"
                   r"(?P<value>'[^']*'|\"[^\"]*\")")


def _is_secret(key: str) -> bool:
    low = key.lower()
    return any(word in low for word in SECRET_PARAMS)


def redact_text(text: str) -> str:
    """``text`` with every ``scheme://user:password@`` password and every secret query
    parameter value replaced by ``***`` (for messages that quote URLs or client configs)."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    text = _PARAM.sub(lambda m: f"{m['name']}***" if _is_secret(m["key"]) else m[0], text)
    return _ITEM.sub(lambda m: f"{m['name']}'***'" if _is_secret(m["key"]) else m[0], text)


def redact_url(url: str) -> str:
    """``url`` without its secrets (see the module docstring)."""
    return redact_text(str(url))
