"""The browser page at ``/`` (static HTML and JS under ``service/static/``, no build step) and
``GET /ui/config``, what the page needs to know before the first request (whether it must ask
for an API key, and the upload limit)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from service.deps import State

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(tags=["page"])


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    """The page: submit joint, video-to-audio or audio-to-video jobs and watch them."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html",
                        headers={"Cache-Control": "no-cache"})


@router.get("/ui/config")
def ui_config(state: State) -> dict[str, object]:
    """``auth``: ``"open"`` (no key needed) or ``"api_key"`` (send ``Authorization: Bearer``);
    ``max_upload_bytes``; the configured ``models`` and the default one."""
    s = state.settings
    return {"auth": "open" if s.open_mode else "api_key",
            "max_upload_bytes": s.max_upload_bytes,
            "models": sorted(s.models), "default_model": s.default_model}


def static_files() -> StaticFiles:
    """``/ui/static/*``: the page's script and stylesheet."""
    return StaticFiles(directory=STATIC_DIR)
