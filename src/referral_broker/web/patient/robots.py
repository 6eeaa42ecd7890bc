"""`/robots.txt`: search engines may read the public pages (the clinic finder and the form), and nothing of a
patient's own pages (`/manage/<token>`, `/rights`) nor the operators' (`/ops`) nor the JSON API.

It is a request to well-behaved crawlers, not a lock: what guards those pages is their secret link, the
one-time code and the operator's sign-in. No `Allow: /` line: anything not disallowed is allowed, and
readers that take the first matching line (as Python's `urllib.robotparser` does) would let it win.
"""

from __future__ import annotations

from litestar import get
from litestar.enums import MediaType

ROBOTS_TXT = """\
User-agent: *
Disallow: /manage
Disallow: /rights
Disallow: /ops
Disallow: /api/
"""


@get("/robots.txt", media_type=MediaType.TEXT, include_in_schema=False, sync_to_thread=False)
def robots_txt() -> str:
    return ROBOTS_TXT
