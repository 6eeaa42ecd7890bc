"""`/schema`: the OpenAPI document, and a plain page that lists the operations and links to it.

Litestar's interactive reference pages (Swagger UI, ReDoc, Elements, RapiDoc) load their scripts from a CDN,
which the CSP (`default-src 'none'`, no third-party resources: security.md controls 8 and 12) rightly blocks,
so they showed blank pages. Vendoring their JavaScript would mean shipping and patching a large third-party
bundle for a page few people read; the JSON document is what clients and tools (schemathesis, code
generators) use, and any OpenAPI viewer can open it locally.
"""

from __future__ import annotations

from html import escape
from typing import Any

from litestar import Request
from litestar.openapi.plugins import JsonRenderPlugin, OpenAPIRenderPlugin

_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


class OperationsPage(OpenAPIRenderPlugin):
    """The root of `/schema`: every operation by path, with a link to the document. No script, no style of its own."""

    def __init__(self) -> None:
        super().__init__(path="/")

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        info = openapi_schema.get("info", {})
        title = escape(f"{info.get('title', 'API')} {info.get('version', '')}".strip())
        rows = []
        for path, item in sorted(openapi_schema.get("paths", {}).items()):
            for method in _METHODS:
                if method in item:
                    summary = item[method].get("description") or item[method].get("summary") or ""
                    rows.append(
                        f"<tr><td>{method.upper()}</td><td><code>{escape(path)}</code></td>"
                        f"<td>{escape(summary.splitlines()[0] if summary else '')}</td></tr>"
                    )
        document = escape(self.get_openapi_json_route(request))
        version = escape(str(openapi_schema.get("openapi", "")))
        page = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{title}: API reference</title>
  <link rel="stylesheet" href="/static/site.css">
</head>
<body>
  <main class="wrap">
    <h1>{title}: API reference</h1>
    <p>The OpenAPI {version} document: <a href="{document}">{document}</a>. Open it in any OpenAPI viewer,
    or generate a client from it. Request and response shapes, limits and refusals are all stated there.</p>
    <table>
      <thead><tr><th>method</th><th>path</th><th>what it does</th></tr></thead>
      <tbody>
        {"".join(rows)}
      </tbody>
    </table>
  </main>
</body>
</html>
"""
        return page.encode()


def render_plugins() -> list[OpenAPIRenderPlugin]:
    return [OperationsPage(), JsonRenderPlugin()]
