"""Email addresses as the service compares them: one normal form for sends and suppressions.

The send API turns every address's domain into its ASCII (IDNA, punycode) form before a mail
leaves (sends.serializers.ascii_address); the suppression list stores and looks addresses up in
that same form, lower-cased as a whole (see the README, "Suppression"), so that an address
written with a Unicode domain, in capitals or as `Name <addr>` is one address everywhere.
"""

import re
from email.utils import parseaddr

import idna


def to_ascii(domain: str) -> str:
    """The domain in ASCII (A-labels), IDNA 2008 with UTS #46 mapping, as browsers encode it;
    raises idna.IDNAError (a UnicodeError) when refused.

    Python's `idna` codec is IDNA 2003, which maps some letters to others: `faß.de` would become
    `fass.de`, a different domain (IDNA 2008: `xn--fa-hia.de`), `ς` would become `σ`, and a
    zero-width joiner would vanish. An ASCII domain is returned as written; its `xn--` labels
    must decode to valid IDNA 2008 labels. A non-ASCII one is mapped with UTS #46
    (non-transitional, so `ß` and `ς` stay themselves; lower case) and encoded; what IDNA 2008
    disallows (emoji, a joiner outside the scripts that need it, symbols) is refused rather
    than guessed at. Every domain the service encodes (recipients, the sending identity,
    tracked link hosts, suppressions) goes through here.
    """
    if domain.isascii():
        for label in domain.split("."):
            if label[:4].lower() == "xn--":
                idna.ulabel(label)
        return domain
    return idna.encode(domain, uts46=True).decode("ascii")


# A quoted local part whose inside is a plain dot-atom names the same mailbox unquoted
# (RFC 5321 4.1.2): `"rcpt"@example.com` is `rcpt@example.com`.
_QUOTED_DOT_ATOM = re.compile(
    r'^"([A-Za-z0-9!#$%&\'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&\'*+/=?^_`{|}~-]+)*)"$'
)


# A bare address: a dot-atom local part and a domain of 1 to 63-character labels. The email
# package's parsers give it back exactly as written (parseaddr: ("", it); Django's
# sanitize_address: it), after a walk in Python over every character; the send path meets
# several per send, nearly always this shape.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9-]{1,63}"
_BARE = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*@{_LABEL}(?:\.{_LABEL})*")


def is_bare(address: str) -> bool:
    return _BARE.fullmatch(address) is not None


def addr_spec(value: str) -> str:
    """email.utils.parseaddr(value)[1]: the address of `addr` or `Name <addr>` ('' if none)."""
    return value if is_bare(value) else parseaddr(value)[1]


def normalize(address: str) -> str:
    """The bare address of `addr` or `Name <addr>`, IDNA domain, lower-cased, a needlessly
    quoted local part unquoted; ValueError when it has no `@`, holds a control character, or
    its domain cannot be encoded."""
    if any(ord(char) < 32 or 127 <= ord(char) < 160 for char in address):
        raise ValueError("Enter a valid email address.")
    addr = addr_spec(address) or address.strip()
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain:
        raise ValueError("Enter a valid email address.")
    quoted = _QUOTED_DOT_ATOM.match(local)
    if quoted:
        local = quoted.group(1)
    try:
        return f"{local}@{to_ascii(domain)}".lower()
    except UnicodeError:
        raise ValueError("The domain is not a valid internationalised domain name.") from None
