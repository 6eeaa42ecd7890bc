"""The protocol's JSON Schemas at stable URLs: `/protocol/schemas/<name>.schema.json` (docs/protocol.md).

The files are the referral-protocol package's own; each is served with `$id` absolute under the public
URL. They hold no person and change only with a release, so unlike everything else here they may be cached.
"""

from __future__ import annotations

from functools import cache

from litestar import Response, get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

from referral_broker.services.context import BrokerContext
from referral_protocol import schemas

MEDIA_TYPE = "application/schema+json"
CACHE_CONTROL = "public, max-age=86400"
_SUFFIX = ".schema.json"


@cache
def _served(name: str, public_url: str) -> bytes:
    return schemas.with_base(name, public_url)


@get("/protocol/schemas/{file:str}", media_type=MEDIA_TYPE, tags=["protocol"], sync_to_thread=False)
def protocol_schema(file: FromPath[str], broker: NamedDependency[BrokerContext]) -> Response[bytes]:
    """A JSON Schema (draft 2020-12) of the clinic protocol; the names are listed in docs/protocol.md."""
    name = file.removesuffix(_SUFFIX)
    if not file.endswith(_SUFFIX) or name not in schemas.NAMES:
        raise NotFoundException(f"no protocol schema is called {file!r}")
    return Response(
        _served(name, broker.settings.public_url),
        media_type=MEDIA_TYPE,
        headers={"cache-control": CACHE_CONTROL},
    )
