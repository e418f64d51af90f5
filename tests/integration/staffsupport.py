"""Helpers for the workbench tests: a site whose content/ is a throwaway copy, staff accounts, signing in."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from websupport import ROOT, Site, csrf_of

from pipeline.editorial import staff, totp

PASSWORD = "correct horse battery staple"
EDITOR = "edna@example.org"
REVIEWER = "rita@example.org"
REVIEWER2 = "rafael@example.org"
ADMIN = "ada@example.org"


def content_dir(tmp: Path) -> Path:
    content = tmp / "content"
    content.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "content" / "topics.yaml", content / "topics.yaml")
    return content


def add_accounts(site: Site) -> dict[str, staff.Account]:
    out = {}
    with site.engine.begin() as conn:
        for email, name, role in ((EDITOR, "Edna Editor", "editor"), (REVIEWER, "Rita Reviewer", "reviewer"),
                                  (REVIEWER2, "Rafael Reviewer", "reviewer"), (ADMIN, "Ada Admin", "admin")):
            out[role if role not in out else role + "2"] = staff.add(
                conn, email=email, name=name, role=role, credentials="RN" if role == "reviewer" else "",
                password=PASSWORD, at=site.clock())
    return out


def give_totp(site: Site, email: str) -> str:
    secret = totp.new_secret()
    with site.engine.begin() as conn:
        staff.set_totp(conn, email, secret, at=site.clock())
    return secret


def login(site: Site, email: str, *, password: str = PASSWORD, secret: str | None = None,
          ip: str = "192.0.2.10"):
    """Sign in like a person; returns the last response (the dashboard's redirect when it worked)."""
    r = site.form_post("/staff/login", "/staff/login", {"email": email, "password": password}, ip=ip)
    if r.status_code == 303 and r.headers["location"] == "/staff/login/code":
        page = site.get("/staff/login/code", ip=ip)
        if secret is None:  # enrolment: read the secret the page shows
            secret = re.search(r'class="secret">([A-Z2-7]{16,})<', page.text).group(1)
        r = site.post("/staff/login/code", data={"csrf_token": csrf_of(page.text),
                                                 "code": totp.code_at(secret, site.clock())}, ip=ip)
    return r


def staff_cookie(site: Site, ip: str = "192.0.2.10") -> str | None:
    return site.client(ip).cookies.get("mbc_staff")


def article_form(**overrides) -> dict:
    values = {"slug": "", "title": "Resting when you feel tired", "topics": ["symptom-management"],
              "summary": "Short rests can help with tiredness. Here is how to plan them.",
              "source_title": ["Fatigue (PDQ), National Cancer Institute"],
              "source_url": ["https://www.cancer.gov/about-cancer/treatment/side-effects/fatigue"],
              "content_notes": "", "link": "", "publish_at": "2026-11-20T09:00",
              "body": "Tiredness is common. Short rests can help.\n\nPlan your day around the times you feel best.",
              "action": "submit"}
    values.update(overrides)
    return values
