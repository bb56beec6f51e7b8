"""The console's web layer: security headers, sessions, CSRF, sign-in/out, rendering.

Every page is rendered on the server (Starlette + Jinja2, autoescaped); the
only assets are the package's own stylesheet, so it works offline under a
strict Content-Security-Policy.  Every key operation is ``Engine.call`` as the
signed-in principal (key policies, grants and the audit trail apply exactly
as for the same call over the API).
"""
from __future__ import annotations

import hmac
import logging
import secrets
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from kms_core.errors import KMSError

from . import audit_view, filters, keys
from .backend import Backend, RequestContext
from .sessions import ABSOLUTE, Session, Sessions

log = logging.getLogger("kms.console")

PREFIX = "/console"
COOKIE = "kms_console_session"
SIGNIN_COOKIE = "kms_console_signin"
_HERE = Path(__file__).parent
CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
MAX_FORM_FIELDS = 2000
MAX_PART = 512 * 1024


class SignInRequired(Exception):
    pass


class Forbidden(Exception):
    def __init__(self, message: str):
        self.message = message


class Console:
    """The ``/console`` ASGI application for one engine."""

    def __init__(self, engine: Any, *, dev_credentials: bool = False, clock=None):
        self.backend = Backend(engine)
        self.sessions = Sessions(engine.store, **({"clock": clock} if clock else {}))
        self.dev_credentials = dev_credentials
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(_HERE / "templates"),
                                 autoescape=True)
        filters.install(env)
        self.templates = Jinja2Templates(env=env)
        routes = [
            Route(PREFIX, self.home), Route(PREFIX + "/", self.home),
            Route(PREFIX + "/signin", self.signin_page, methods=["GET"]),
            Route(PREFIX + "/signin", self.signin, methods=["POST"]),
            Route(PREFIX + "/signout", self.signout, methods=["POST"]),
            *keys.routes(self),
            *audit_view.routes(self),
            Mount(PREFIX + "/static", StaticFiles(directory=_HERE / "static"), name="static"),
        ]
        self.app = Starlette(routes=routes, exception_handlers={
            SignInRequired: self._to_signin, Forbidden: self._forbidden,
            HTTPException: self._http_error, Exception: self._internal_error})

    async def __call__(self, scope, receive, send) -> None:
        async def with_headers(msg):
            if msg["type"] == "http.response.start":
                msg["headers"] = list(msg.get("headers", [])) + _HEADERS
            await send(msg)

        try:
            await self.app(scope, receive, with_headers)
        except Exception:  # already answered by _internal_error (Starlette re-raises for servers to log)
            pass

    # -- sessions ---------------------------------------------------------------------
    async def session(self, request: Request) -> Session:
        s = await run_in_threadpool(self.sessions.get, request.cookies.get(COOKIE))
        if s is None:
            raise SignInRequired()
        return s

    def context(self, request: Request, session: Session) -> RequestContext:
        client = request.client
        return RequestContext(
            region=self.backend.region, account_id=self.backend.account_id, principal=session.principal,
            source_ip=client.host if client else None,
            user_agent=("kms-console " + request.headers.get("user-agent", ""))[:256],
            request_id=str(uuid.uuid4()), access_key_id=session.access_key_id)

    async def call(self, request: Request, session: Session, operation: str, params: dict) -> dict:
        """``Engine.call`` as the signed-in principal (raises KMSError)."""
        return await run_in_threadpool(self.backend.call, operation, params, self.context(request, session))

    async def form(self, request: Request, session: Session | None = None,
                   expected: str | None = None) -> FormData:
        """The submitted form, after checking its origin and CSRF token."""
        origin = request.headers.get("origin")
        if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host", ""):
            raise Forbidden("The request came from another site.")
        form = await request.form(max_files=4, max_fields=MAX_FORM_FIELDS, max_part_size=MAX_PART)
        sent = form.get("csrf_token")
        want = session.csrf if session is not None else expected
        if not isinstance(sent, str) or not want or not hmac.compare_digest(sent.encode(), want.encode()):
            raise Forbidden("The form's security token is missing or out of date. Reload the page and try again.")
        return form

    async def flash(self, session: Session, kind: str, text: str, code: str | None = None) -> None:
        await run_in_threadpool(self.sessions.flash, session, kind, text, code)

    async def flash_error(self, session: Session, err: KMSError) -> None:
        await self.flash(session, "error", err.message, err.code)

    # -- rendering ---------------------------------------------------------------------
    async def render(self, request: Request, template: str, session: Session | None, status: int = 200,
                     **context: Any) -> Response:
        flash = context.pop("flash", None)
        if flash is None and session is not None:
            flash = await run_in_threadpool(self.sessions.pop_flash, session)
        context.update(session=session, csrf=session.csrf if session else context.get("csrf", ""),
                       flash=flash, dev=self.dev_credentials, region=self.backend.region,
                       account_id=self.backend.account_id, prefix=PREFIX)
        context.setdefault("nav", "")
        return self.templates.TemplateResponse(request, template, context, status_code=status)

    @staticmethod
    def redirect(path: str) -> RedirectResponse:
        return RedirectResponse(PREFIX + path, status_code=303)

    # -- pages ------------------------------------------------------------------------
    async def home(self, request: Request) -> Response:
        return self.redirect("/keys")

    async def signin_page(self, request: Request, error: str | None = None, status: int = 200) -> Response:
        token = secrets.token_urlsafe(32)
        resp = await self.render(request, "signin.html", None, status=status, csrf=token,
                                 flash={"kind": "error", "text": error, "code": None} if error else None)
        resp.set_cookie(SIGNIN_COOKIE, token, max_age=3600, path=PREFIX, secure=True, httponly=True,
                        samesite="strict")
        return resp

    async def signin(self, request: Request) -> Response:
        form = await self.form(request, expected=request.cookies.get(SIGNIN_COOKIE))
        principal: str | None = None
        akid: str | None = None
        if form.get("mode") == "dev":
            if not self.dev_credentials:
                raise Forbidden("Local development sign-in is only available under `kms serve --dev-credentials`.")
            principal = f"arn:aws:iam::{self.backend.account_id}:root"
        else:
            akid = str(form.get("access_key_id", "")).strip()[:128]
            secret = str(form.get("secret_access_key", ""))[:256]
            if akid and secret:
                principal = await run_in_threadpool(self.backend.check_access_key, akid, secret)
        if principal is None:
            log.info("console sign-in refused for access key %s", (akid or "")[:32] or "(none)")
            return await self.signin_page(
                request, "UnrecognizedClientException: The security token included in the request is invalid.",
                status=401)
        # A brand-new token whatever cookie came in: no session fixation.
        await run_in_threadpool(self.sessions.delete, request.cookies.get(COOKIE))
        token = await run_in_threadpool(self.sessions.create, principal, akid)
        resp = self.redirect("/keys")
        resp.set_cookie(COOKIE, token, max_age=int(ABSOLUTE), path=PREFIX, secure=True, httponly=True,
                        samesite="strict")
        resp.delete_cookie(SIGNIN_COOKIE, path=PREFIX, secure=True, httponly=True, samesite="strict")
        log.info("console sign-in: %s", principal)
        return resp

    async def signout(self, request: Request) -> Response:
        session = await self.session(request)
        await self.form(request, session)
        await run_in_threadpool(self.sessions.delete, request.cookies.get(COOKIE))
        resp = self.redirect("/signin")
        resp.delete_cookie(COOKIE, path=PREFIX, secure=True, httponly=True, samesite="strict")
        return resp

    # -- errors -------------------------------------------------------------------------
    async def _to_signin(self, request: Request, exc: Exception) -> Response:
        if request.method == "GET":
            return self.redirect("/signin")
        return await self.signin_page(request, "Your session has ended. Sign in again.", status=401)

    async def _forbidden(self, request: Request, exc: Exception) -> Response:
        msg = exc.message if isinstance(exc, Forbidden) else "Forbidden"
        return await self.render(request, "error.html", None, status=403, title="Request refused",
                                 message=msg)

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        title = {404: "Page not found", 405: "Method not allowed"}.get(status, "Bad request")
        if status >= 500:
            status = 400
        return await self.render(request, "error.html", None, status=status, title=title,
                                 message=exc.detail if isinstance(exc, HTTPException) else "")

    async def _internal_error(self, request: Request, exc: Exception) -> Response:
        log.error("console error on %s %s: %s", request.method, request.url.path, type(exc).__name__,
                  exc_info=log.isEnabledFor(logging.DEBUG))
        return PlainTextResponse("An internal error occurred.", status_code=500)


def create_console(engine: Any, *, dev_credentials: bool = False, clock=None) -> Console:
    return Console(engine, dev_credentials=dev_credentials, clock=clock)
