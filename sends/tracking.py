"""Open and click tracking (placeholder: returns the HTML unchanged until tracking lands)."""


def inject(html: str, *, send, policy) -> str:
    return html
