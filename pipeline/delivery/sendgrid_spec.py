"""What SendGrid's Mail Send API and Event Webhook define, shared by the request encoder, the HTTP client and the
webhook: limits, headers it will not take, HTTP statuses, and the custom_args names that lead an event back to
the ledger (an opaque id, never an address)."""

# Limits copied from SendGrid's Mail Send OpenAPI spec (tsg_mail_v3.yaml, requestBodies.PostMailSend);
# tests/unit/test_sendgrid_limits.py checks them against the spec file when it is present.
MAX_PERSONALIZATIONS = 1000  # personalizations.maxItems
MAX_SUBSTITUTION_BYTES = 10_000  # personalizations[].substitutions: "10,000 bytes per personalization object"
MAX_CUSTOM_ARGS_BYTES = 10_000  # personalizations[].custom_args: "may not exceed 10,000 bytes"
MAX_CATEGORIES = 10  # categories.maxItems
MAX_CATEGORY_LENGTH = 255  # categories.items.maxLength
# personalizations[].headers / headers: "You may not override the following headers" (compared case-insensitively)
FORBIDDEN_HEADERS = frozenset(h.lower() for h in (
    "x-sg-id", "x-sg-eid", "received", "dkim-signature", "Content-Type", "Content-Transfer-Encoding",
    "To", "From", "Subject", "Reply-To", "CC", "BCC"))

# personalizations[].to[].email has "format: email": an RFC 5321 mailbox, ASCII only. One address outside it makes
# SendGrid refuse the whole request, so such a recipient is left out of it (and failed) instead.
NON_ASCII_ADDRESS = ("SendGrid takes ASCII addresses only (its spec's format: email); send to this address through "
                     "an SMTP relay that supports SMTPUTF8")

# Statuses the HTTP client retries, and those that mean a setting is wrong.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
FATAL_STATUSES = frozenset({401, 403})
ARG_ISSUE, ARG_BATCH, ARG_RECIPIENT = "mbc_issue", "mbc_batch", "mbc_rid"
