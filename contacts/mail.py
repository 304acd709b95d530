"""What one-click unsubscribe adds to a mail: the RFC 8058 headers and a footer link.

The send path (sends.services) calls one_click() for every mail under a policy with one-click
unsubscribe on, before the HTML is rendered: tracking then sees the link and leaves it alone
(sends.tracking never rewrites unsubscribe links).
"""

import re
from dataclasses import dataclass

from django.utils.html import escape

from accounts.models import Organization
from contacts import tokens

PLACEHOLDER = "{{unsubscribe_url}}"
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)
_HTML_END = re.compile(r"</html\s*>", re.IGNORECASE)


@dataclass(frozen=True)
class OneClick:
    organization_name: str
    url: str

    @property
    def headers(self) -> dict[str, str]:
        return {
            "List-Unsubscribe": f"<{self.url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }

    def text(self, content: str) -> str:
        """The text part with the link where PLACEHOLDER is, or a footer with it."""
        if PLACEHOLDER in content:
            return content.replace(PLACEHOLDER, self.url)
        return f"{content.rstrip()}\n\n--\nUnsubscribe from {self.organization_name}: {self.url}\n"

    def html(self, html: str) -> str:
        """The HTML part with the link where PLACEHOLDER is, or a footer before </body>."""
        if PLACEHOLDER in html:
            return html.replace(PLACEHOLDER, escape(self.url))
        footer = (
            '<p style="margin:24px 0 0;font-size:12px;color:#6b7280">'
            f"You receive this mail from {escape(self.organization_name)}. "
            f'<a href="{escape(self.url)}">Unsubscribe</a></p>'
        )
        for end in (_BODY_END, _HTML_END):
            matches = list(end.finditer(html))
            if matches:
                at = matches[-1].start()
                return html[:at] + footer + html[at:]
        return html + footer


def one_click(organization: Organization, to: str, category: str) -> OneClick:
    """The link and headers for a mail to `to` under a policy of `category` (empty: all mail)."""
    token = tokens.make(organization, to, category)
    return OneClick(organization.name, tokens.unsubscribe_url(token))
