"""Staff login: password, then a one-time code (or enrolment of a second factor), then a new session id."""

from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from pipeline.editorial import qr, sessions, signin, totp
from pipeline.web.staff.common import COOKIE, Call, Staff, field

ISSUER = "MBC Digest workbench"


def _ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def login_page(s: Staff, request: Request) -> Response:
    return s.render(request, "login.html.j2", {"error": None, "email": ""})


async def login(s: Staff, request: Request) -> Response:
    form, refused = await s.web.checked_form(request, "/staff/login")
    if refused is not None:
        return refused
    email, password = field(form, "email", 320), field(form, "password", 1100)
    at = s.web.now()
    old = request.cookies.get(COOKIE)

    def step(conn):
        sessions.sweep(conn, at=at)
        outcome = signin.password_step(conn, email=email, password=password, ip=_ip(request),
                                       secret=s.settings.secret_key, at=at)
        if outcome.account is None:
            return outcome.error, None, None
        account = outcome.account
        stage = signin.needs_code(account, two_factor=s.settings.staff_2fa)
        pending = totp.new_secret() if stage == "enrol" else None
        if stage is None:
            signin.signed_in(conn, account, at=at)
        return None, sessions.start(conn, account, stage=stage or "full", at=at, pending_secret=pending,
                                    replaces=old), stage

    error, cookie, stage = await s.web.db(step)
    if error:
        return s.render(request, "login.html.j2", {"error": error, "email": email},
                        status=429 if error == signin.LOCKED_ANSWER else 400)
    response = RedirectResponse("/staff/login/code" if stage else "/staff/", status_code=303)
    s.set_cookie(response, cookie)  # type: ignore[arg-type]
    return response


def _code_values(sess: sessions.Session, error: str | None) -> dict:
    values: dict = {"error": error, "enrol": sess.stage == "enrol"}
    if sess.stage == "enrol":
        uri = (f"otpauth://totp/{quote(ISSUER)}:{quote(sess.account.email)}?secret={sess.pending_secret}"
               f"&issuer={quote(ISSUER)}")
        values.update(uri=uri, secret=sess.pending_secret,
                      qr=qr.svg(uri, title="QR code for your authenticator app"))
    return values


async def code_page(s: Staff, request: Request) -> Response:
    sess = await s.session(request, s.web.now())
    if sess is None or sess.stage == "full":
        return RedirectResponse("/staff/login" if sess is None else "/staff/", status_code=303)
    return s.render(request, "code.html.j2", _code_values(sess, None))


async def code(s: Staff, request: Request) -> Response:
    at = s.web.now()
    sess = await s.session(request, at)
    if sess is None or sess.stage == "full":
        return RedirectResponse("/staff/login", status_code=303)
    form, refused = await s.web.checked_form(request, "/staff/login/code")
    if refused is not None:
        return refused
    typed = field(form, "code", 20)
    old = request.cookies.get(COOKIE)

    def step(conn):
        error = signin.code_step(conn, sess.account, code=typed, ip=_ip(request), secret=s.settings.secret_key,
                                 at=at, enrol_secret=sess.pending_secret if sess.stage == "enrol" else None)
        if error:
            return error, None
        signin.signed_in(conn, sess.account, at=at)
        # Enrolment changed the account row, not the password: the new session keeps the same stamp.
        return None, sessions.start(conn, sess.account, stage="full", at=at, replaces=old)

    error, cookie = await s.web.db(step)
    if error:
        return s.render(request, "code.html.j2", _code_values(sess, error),
                        status=429 if error == signin.LOCKED_ANSWER else 400)
    response = RedirectResponse("/staff/", status_code=303)
    s.set_cookie(response, cookie)  # type: ignore[arg-type]
    return response


async def logout(s: Staff, call: Call) -> Response:
    cookie = call.request.cookies.get(COOKIE, "")

    def end(conn):
        from pipeline.editorial import audit

        sessions.end(conn, cookie)
        audit.append(conn, "logout", actor=call.account.actor, at=call.at)

    await s.web.db(end)
    response = s.page(call.request, "You have signed out", ["Your session has ended on this device."],
                      [("/staff/login", "Sign in again")])
    s.clear_cookie(response)
    return response
