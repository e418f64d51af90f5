"""The editorial record: staff accounts, immutable revisions, reviews, publications and the append-only audit log.

The interface for commands and the web workbench (each takes a connection and ``at``):
    canonical.revision_of(article)              the reviewed text and its SHA-256
    record.sync_files(conn, articles, …)        content/ files become revisions (and attestations, schedules)
    record.approve / record.request_changes     a staff review of one revision
    staff.add / staff.authenticate / …          accounts
    live.live_articles(conn, at=, mode=)        what readers see
    audit.append / audit.entries                the log
"""
