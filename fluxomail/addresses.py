"""Email addresses as the service compares them: one normal form for sends and suppressions.

The send API turns every address's domain into its ASCII (IDNA, punycode) form before a mail
leaves (sends.serializers.ascii_address); the suppression list stores and looks addresses up in
that same form, lower-cased as a whole (see the README, "Suppression"), so that an address
written with a Unicode domain, in capitals or as `Name <addr>` is one address everywhere.
"""

from email.utils import parseaddr


def idna_domain(domain: str) -> str:
    """`domain` in its ASCII form; ValueError when it is not a valid internationalised name."""
    try:
        encoded = domain.encode("idna")
        # Decoding back catches ASCII labels that are not valid punycode (`xn--a`).
        encoded.decode("idna")
    except UnicodeError:
        raise ValueError("The domain is not a valid internationalised domain name.") from None
    return encoded.decode("ascii")


def normalize(address: str) -> str:
    """The bare address of `addr` or `Name <addr>`, IDNA domain, lower-cased; ValueError when
    it has no `@` or its domain cannot be encoded."""
    addr = parseaddr(address)[1] or address.strip()
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain:
        raise ValueError("Enter a valid email address.")
    return f"{local}@{idna_domain(domain)}".lower()
