"""The curation inbox in the workbench: candidates by source and topic, each source's health, promote and dismiss."""

from __future__ import annotations

from collections import defaultdict

from starlette.responses import RedirectResponse, Response

from pipeline.curation import inbox as store
from pipeline.curation.promote import write_draft
from pipeline.curation.sources import load_sources
from pipeline.editorial import audit
from pipeline.errors import InputError, NotFound, PipelineError
from pipeline.web.staff.common import Call, Staff, field


def _watched(s: Staff):
    library = s.library()
    watched, problems = load_sources(s.content_dir, topic_ids=frozenset(library.topic_ids))
    return library, watched, problems


async def inbox_page(s: Staff, call: Call, *, notice: str | None = None, status: int = 200) -> Response:
    library, watched, problems = _watched(s)

    def read(conn):
        return store.candidates(conn), store.all_health(conn)

    found, health = await s.web.db(read)
    by_id = {w.id: w for w in watched}
    titles = {t.id: t.title for t in library.topics}
    groups: dict[tuple[str, str], list] = defaultdict(list)
    for cand in found:
        src = by_id.get(cand.sources[0]) if cand.sources else None
        topic = titles.get(src.topics[0], src.topics[0]) if src and src.topics else "No topic"
        groups[(src.name if src else (cand.sources[0] if cand.sources else "Unknown source"), topic)].append(cand)
    return s.render(call.request, "inbox.html.j2", {
        "groups": sorted(groups.items()), "sources": watched, "health": health, "problems": problems,
        "notice": notice, "topics": library.topics}, call=call, status=status)


async def act(s: Staff, call: Call) -> Response:
    try:
        cid = int(field(call.form, "candidate", 12))
    except ValueError:
        return await inbox_page(s, call, notice="That item is not in the inbox; nothing was changed.", status=400)
    action = field(call.form, "action", 20)
    if action == "dismiss":
        def run(conn):
            cand = store.dismiss(conn, cid, at=call.at)
            audit.append(conn, "inbox_dismissed", actor=call.account.actor, at=call.at, candidate=cand.id)

        try:
            await s.web.db(run)
        except PipelineError as exc:
            return await inbox_page(s, call, notice=f"{exc} Nothing was changed.", status=400)
        return await inbox_page(s, call, notice="Dismissed. It will not come back.")
    slug = field(call.form, "slug", 120).strip()
    _, watched, _ = _watched(s)

    def promote(conn):
        cand = store.get(conn, cid)
        store.mark_promoted(conn, cand, slug=slug, at=call.at)
        write_draft(s.content_dir, cand, slug=slug, sources=watched, topics=None, at=call.at)
        audit.append(conn, "inbox_promoted", actor=call.account.actor, at=call.at, slug=slug, candidate=cand.id)

    try:
        await s.web.db(promote)
    except (InputError, NotFound, PipelineError) as exc:
        return await inbox_page(s, call, notice=f"Not promoted: {str(exc).replace('--slug', 'address')} "
                                                "Nothing was changed.", status=400)
    return RedirectResponse(f"/staff/articles/{slug}/edit", status_code=303)
