"""The admin API as the `mesh` commands reach it: its URL (MESH_ADMIN_URL, or the admin host
and port), the admin token (MESH_ADMIN_TOKEN, or the data directory's), and one error line
for an API that cannot be reached, refuses the token, or answers with an error body."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mesh.cli.errors import fail

if TYPE_CHECKING:
    import httpx

    from mesh.config import MeshSettings


def admin_base_url(settings: MeshSettings) -> str:
    return (settings.admin_url or f"http://{settings.admin_host}:{settings.admin_port}"
            ).rstrip("/")


def admin_request(settings: MeshSettings, method: str, path: str, *, timeout: float = 30,
                  why: str = "", **kwargs: Any) -> httpx.Response:
    """`method path` on the admin API with the admin token; exits 1 when the API cannot be
    reached or refuses the token. Other statuses are the caller's (see `admin_error`)."""
    import httpx

    from mesh.admin_credentials import admin_token

    url = admin_base_url(settings)
    token, _ = admin_token(settings)
    headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
    try:
        response = httpx.request(method, f"{url}{path}", timeout=timeout, headers=headers,
                                 **kwargs)
    except httpx.HTTPError as exc:
        raise fail(f"{why}the admin API at {url} cannot be reached ({exc}): is `mesh up` "
                   "running?", 1) from None
    if response.status_code == 401:
        raise fail(f"the admin API at {url} refused the token (MESH_ADMIN_TOKEN)", 1)
    return response


def error_body(response: httpx.Response) -> dict[str, Any]:
    """The admin API's error body ({code, message, details}), whatever shape it came in."""
    try:
        body = response.json() if response.content else {}
    except ValueError:
        return {"code": "error", "message": response.text[:500]}
    if isinstance(body, dict) and isinstance(body.get("detail"), dict):
        body = body["detail"]
    if not isinstance(body, dict):
        return {"code": "error", "message": str(body)[:500]}
    return body


def admin_error(response: httpx.Response) -> Exception:
    """`error: <code>: <message>` and exit 1 (2 for a request the API found malformed)."""
    body = error_body(response)
    message = body.get("message") or body.get("detail") or response.reason_phrase
    return fail(f"{body.get('code', response.status_code)}: {message}",
                2 if response.status_code in (400, 404, 422) else 1)
