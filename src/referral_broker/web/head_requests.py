"""`HEAD` wherever `GET` works (RFC 9110 9.3.2): the GET's status and headers, without its body.

Litestar routes a method only to handlers that declare it, so a HEAD for a GET route would be 405. This
wraps the whole app, in front of routing: a HEAD is handled as the GET it mirrors (guards, CSRF cookie
and security headers included) and every body chunk is emptied on the way out. GET handlers change
nothing, so running one for a HEAD is safe. A signed clinic request signs the method it was sent with:
`method_as_sent` gives that back.
"""

from __future__ import annotations

from typing import Any, cast

from litestar.types import ASGIApp, Message, Receive, Scope, Send

#: Marks a scope that was a HEAD before this module made it a GET (a server-specific scope key, as ASGI allows).
_SENT_AS_HEAD = "referral_broker.sent_as_head"


def method_as_sent(scope: Scope) -> str:
    fields = cast(dict[str, Any], scope)
    return "HEAD" if fields.get(_SENT_AS_HEAD) else str(fields["method"])


def answer_head_as_get(app: ASGIApp) -> ASGIApp:
    async def handle(scope: Scope, receive: Receive, send: Send) -> None:
        fields = cast(dict[str, Any], scope)
        if fields["type"] != "http" or fields["method"] != "HEAD":
            await app(scope, receive, send)
            return

        async def send_without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = cast(Message, {**message, "body": b""})
            await send(message)

        # A copy: the server keeps its own scope, and with it the knowledge that this was a HEAD.
        await app(cast(Scope, {**fields, "method": "GET", _SENT_AS_HEAD: True}), receive, send_without_body)

    return handle
