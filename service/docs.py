"""``GET /docs``: Swagger UI served entirely by the gateway (its JS/CSS come from the
``swagger-ui-bundle-v2`` wheel under ``/docs/assets``), so the docs work on an air-gapped
cluster. FastAPI's own ``/docs`` and ``/redoc`` load their assets from a CDN; both are off."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs/assets"


def swagger_ui_dir() -> Path:
    """The folder of Swagger UI's dist files shipped by the ``swagger-ui-bundle-v2`` wheel."""
    import swagger_ui_bundle  # type: ignore[import-untyped]

    return Path(str(swagger_ui_bundle.swagger_ui_path))


def integer_bounds(node: Any) -> Any:
    """``node`` with the bounds of integer schemas as JSON integers (FastAPI's OpenAPI model
    types ``minimum``/``maximum`` as floats: ``"minimum": 1.0`` on an integer makes generated
    clients type the bound, and so the field, as a float)."""
    if isinstance(node, list):
        return [integer_bounds(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: integer_bounds(v) for k, v in node.items()}
    if out.get("type") == "integer":
        for bound in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            value = out.get(bound)
            if isinstance(value, float) and value.is_integer():
                out[bound] = int(value)
    return out


def install_schema(app: FastAPI) -> None:
    """Serve ``/openapi.json`` with :func:`integer_bounds` applied (computed once)."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = integer_bounds(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def install(app: FastAPI) -> None:
    """Serve ``/docs`` (and its OAuth2 redirect page) with local assets only; build the app with
    ``docs_url=None, redoc_url=None``."""
    app.mount(ASSETS, StaticFiles(directory=swagger_ui_dir()), name="swagger-ui-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url, title=f"{app.title} - API docs",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
            oauth2_redirect_url="/docs/oauth2-redirect")

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()
