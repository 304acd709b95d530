"""Domain names as they go on the wire: IDNA 2008 with UTS #46 mapping, as browsers encode them.

Python's `idna` codec implements IDNA 2003, which maps some letters to others: `faß.de` would
become `fass.de`, a different domain (IDNA 2008: `xn--fa-hia.de`), `ς` would become `σ`, and a
zero-width joiner would vanish. Every domain the service encodes (recipient addresses, the
sending identity, tracked link hosts) goes through `to_ascii` instead.
"""

import idna


def to_ascii(domain: str) -> str:
    """The domain in ASCII (A-labels); raises idna.IDNAError (a UnicodeError) when refused.

    An ASCII domain is returned as written; its `xn--` labels must decode to valid IDNA 2008
    labels. A non-ASCII one is mapped with UTS #46 (non-transitional, so `ß` and `ς` stay
    themselves; lower case) and encoded; what IDNA 2008 disallows (emoji, a joiner outside the
    scripts that need it, symbols) is refused rather than guessed at.
    """
    if domain.isascii():
        for label in domain.split("."):
            if label[:4].lower() == "xn--":
                idna.ulabel(label)
        return domain
    return idna.encode(domain, uts46=True).decode("ascii")
