"""The editors' workbench under /staff/: login, dashboard, editor, review, schedule, digests, inbox and admin."""

from __future__ import annotations

from functools import partial

from starlette.requests import Request
from starlette.routing import Mount, Route, Router

from pipeline.web.staff import admin, articles, auth, inbox, operations, reviewing
from pipeline.web.staff.common import ADMINS, REVIEWERS, WRITERS, Staff, StaffHeaders

# (method, path, handler, roles): the refusal tests walk this table, so every guarded route is in it.
GUARDED = [
    ("GET", "/", articles.dashboard, WRITERS),
    ("GET", "/articles/new", articles.new_page, WRITERS),
    ("POST", "/articles/save", articles.save, WRITERS),
    ("GET", "/articles/{slug}/edit", articles.edit_page, WRITERS),
    ("POST", "/preview", articles.preview, WRITERS),
    ("GET", "/preview", articles.revision_preview, WRITERS),
    ("GET", "/articles/{slug}/review", reviewing.review_page, REVIEWERS),
    ("POST", "/articles/{slug}/review", reviewing.decide, REVIEWERS),
    ("POST", "/articles/{slug}/schedule", operations.schedule, WRITERS),
    ("POST", "/articles/{slug}/retract", operations.retract, WRITERS),
    ("GET", "/digests", operations.digests, WRITERS),
    ("GET", "/digests/preview", operations.digest_preview, WRITERS),
    ("GET", "/inbox", inbox.inbox_page, WRITERS),
    ("POST", "/inbox", inbox.act, WRITERS),
    ("GET", "/admin/accounts", admin.accounts, ADMINS),
    ("POST", "/admin/accounts", admin.add, ADMINS),
    ("POST", "/admin/accounts/disable", admin.disable, ADMINS),
    ("POST", "/admin/accounts/reset-factor", admin.reset_factor, ADMINS),
    ("GET", "/admin/audit", admin.audit_log, ADMINS),
    ("POST", "/logout", auth.logout, WRITERS),
]


def mount(ctx, web) -> Mount:
    s = Staff(ctx, web)
    routes = [
        Route("/login", partial(auth.login_page, s), methods=["GET"]),
        Route("/login", partial(auth.login, s), methods=["POST"]),
        Route("/login/code", partial(auth.code_page, s), methods=["GET"]),
        Route("/login/code", partial(auth.code, s), methods=["POST"]),
        *[Route(path, s.guard(roles)(handler), methods=[method]) for method, path, handler, roles in GUARDED],
    ]

    async def not_found(scope, receive, send):
        request = Request(scope)
        response = s.page(request, "We can't find that page", ["There is no workbench page at this address."],
                          [("/staff/", "Go to the dashboard")], status=404)
        await response(scope, receive, send)

    return Mount("/staff", app=StaffHeaders(Router(routes=routes, default=not_found)))
