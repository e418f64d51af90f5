"""Mail Send request bodies: one variant to up to 1,000 recipients per request, serialised without the HTTP
client (so a worker process can do it), and a single transactional message.

Each personalization carries its recipient's links (``substitutions``), headers (List-Unsubscribe…) and
``custom_args`` (issue, batch and an opaque recipient id, never an address), so the Event Webhook can find the
subscriber again. Tracking is off unless the operator turns it on: whether someone opened an email about hospice
care is health data.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from email.message import EmailMessage
from email.utils import getaddresses, parseaddr
from json.encoder import encode_basestring as _encode_string

from pipeline.delivery.backend import IssueMeta, Outcome, Recipient, RenderedVariant
from pipeline.delivery.sendgrid_spec import (
    ARG_BATCH,
    ARG_ISSUE,
    ARG_RECIPIENT,
    FORBIDDEN_HEADERS,
    MAX_CATEGORY_LENGTH,
    MAX_PERSONALIZATIONS,
    MAX_SUBSTITUTION_BYTES,
    NON_ASCII_ADDRESS,
)
from pipeline.errors import DeliveryError

Prepared = list[tuple[str, list[int], list[Outcome]]]  # per request: (body, ids in it, outcomes of those left out)


def substitutions_size(substitutions: Mapping[str, str]) -> int:
    return sum(len(k.encode("utf-8")) + len(v.encode("utf-8")) for k, v in substitutions.items())


def _address(value: str) -> dict[str, str]:
    name, email = parseaddr(value)
    return {"email": email, "name": name} if name else {"email": email}


def tracking_settings(enabled: bool) -> dict:
    return {"click_tracking": {"enable": enabled, "enable_text": enabled},
            "open_tracking": {"enable": enabled},
            "subscription_tracking": {"enable": False},  # we provide our own unsubscribe, always
            "ganalytics": {"enable": enabled}}


_PLACEHOLDER = re.compile(r"%[%sd]")


class BatchEncoder:
    """Serialises Mail Send requests for one (issue, variant): the shared part once, then each recipient."""

    def __init__(self, issue: IssueMeta, variant: RenderedVariant, *, tracking: bool = False):
        self.issue_arg = str(issue.issue_id if issue.issue_id is not None else 0)
        common = {
            "from": _address(issue.sender),
            "subject": variant.subject,
            # text/plain must come before text/html (SendGrid's content ordering rule).
            "content": [{"type": "text/plain", "value": variant.text}, {"type": "text/html", "value": variant.html}],
            "headers": {"List-Id": issue.list_id},
            "categories": [issue.digest[:MAX_CATEGORY_LENGTH]],
            "tracking_settings": tracking_settings(tracking),
        }
        tail = json.dumps(common, ensure_ascii=False, separators=(",", ":"))
        self._tail = "]," + tail[1:]
        self._shapes: dict[tuple[tuple[str, ...], tuple[str, ...]], tuple[str, int, bool]] = {}

    def personalization(self, r: Recipient, batch_id: str) -> dict:
        """One recipient's personalization as a dict: what ``encode`` writes as text (the tests compare them)."""
        headers = {"Message-ID": r.message_id}
        for name, value in r.headers.items():
            if name.lower() in FORBIDDEN_HEADERS:
                raise ValueError(f"header {name} cannot be set through SendGrid")
            headers[name] = value
        return {"to": [{"email": r.email}], "substitutions": dict(r.substitutions), "headers": headers,
                "custom_args": {ARG_ISSUE: self.issue_arg, ARG_BATCH: batch_id, ARG_RECIPIENT: str(r.subscriber_id)}}

    def encode(self, recipients: Sequence[Recipient], batch_id: str) -> tuple[str, list[Outcome]]:
        """The request body, and outcomes for recipients left out because they break a limit."""
        if len(recipients) > MAX_PERSONALIZATIONS:
            raise ValueError(f"at most {MAX_PERSONALIZATIONS} recipients per request")
        # Each personalization is written straight to JSON text, every value through the json module's own
        # escaper: the same document json.dumps(self.personalization(r, batch_id)) gives, without the dicts.
        # Recipients of one digest share their substitution and header names, so the JSON around the values is
        # built once per set of names (a "shape") and each recipient only fills it in.
        q = _encode_string
        tail = self._args_tail(batch_id)
        shapes = self._shapes
        parts, refused = [], []
        for r in recipients:
            if not r.email.isascii():
                refused.append(Outcome(subscriber_id=r.subscriber_id, state="failed", reason=NON_ASCII_ADDRESS))
                continue
            subs, headers = r.substitutions, r.headers
            shape = shapes.get((tuple(subs), tuple(headers)))
            if shape is None:
                shape = shapes[(tuple(subs), tuple(headers))] = self._shape(subs, headers)
            template, key_chars, own_message_id = shape
            values = subs.values()
            # UTF-8 takes at most 4 bytes a character: only a long set of substitutions needs counting in bytes.
            if ((key_chars + sum(map(len, values))) * 4 > MAX_SUBSTITUTION_BYTES
                    and substitutions_size(subs) > MAX_SUBSTITUTION_BYTES):
                refused.append(Outcome(subscriber_id=r.subscriber_id, state="failed",
                                       reason=f"substitutions exceed {MAX_SUBSTITUTION_BYTES} bytes"))
                continue
            parts.append((template + tail) % (
                q(r.email), *map(q, values), q(str(r.message_id if own_message_id else headers["Message-ID"])),
                *[q(v) for k, v in headers.items() if k != "Message-ID"], int(r.subscriber_id)))
        if not parts:
            return "", refused
        return '{"personalizations":[' + ",".join(parts) + self._tail, refused

    def encode_like(self, prototype: Recipient, markers: Sequence[str], rows: Sequence[tuple[int, Sequence[str]]],
                    batch_id: str) -> tuple[str, list[Outcome]]:
        """What ``encode`` writes, for recipients that differ from ``prototype`` only where its values hold
        ``markers``: each row is (subscriber id, the texts that take the markers' places, in order). The JSON around
        the texts is written once from ``prototype``, whose address must be one of the markers, so each recipient
        costs only the escaping of its own texts: about half of ``encode``'s time (tests check that both write the
        same text)."""
        if len(rows) > MAX_PERSONALIZATIONS:
            raise ValueError(f"at most {MAX_PERSONALIZATIONS} recipients per request")
        fmt, slots, fixed_bytes, sized = self._like(prototype, tuple(markers), batch_id)
        pick = operator.itemgetter(*slots, len(markers))  # the escaped texts in template order, then the id
        # Bytes of the marked substitutions are at most 4 a character, times the most often a text recurs there.
        bound = 4 * max((sized.count(i) for i in sized), default=0)
        address = markers.index(prototype.email)
        q = _encode_string
        parts, refused = [], []
        for sid, texts in rows:
            if not texts[address].isascii():
                refused.append(Outcome(subscriber_id=sid, state="failed", reason=NON_ASCII_ADDRESS))
                continue
            # As in encode: only a long set of substitutions needs counting in bytes.
            if (fixed_bytes + bound * sum(map(len, texts)) > MAX_SUBSTITUTION_BYTES
                    and fixed_bytes + sum(len(texts[i].encode("utf-8")) for i in sized) > MAX_SUBSTITUTION_BYTES):
                refused.append(Outcome(subscriber_id=sid, state="failed",
                                       reason=f"substitutions exceed {MAX_SUBSTITUTION_BYTES} bytes"))
                continue
            values = [q(t)[1:-1] for t in texts]
            values.append(int(sid))
            parts.append(fmt % pick(values))
        if not parts:
            return "", refused
        return '{"personalizations":[' + ",".join(parts) + self._tail, refused

    def _like(self, prototype: Recipient, markers: tuple[str, ...],
              batch_id: str) -> tuple[str, list[int], int, list[int]]:
        """encode's %-template for ``prototype`` with each marker left as %s: (template, which text goes in each
        %s, the substitutions' bytes besides the markers, the markers in the substitutions)."""
        subs, headers = prototype.substitutions, prototype.headers
        template, _key_chars, own_message_id = self._shape(subs, headers)
        values = [prototype.email, *subs.values(), str(prototype.message_id if own_message_id else headers["Message-ID"]),
                  *[v for k, v in headers.items() if k != "Message-ID"]]
        marker = re.compile("|".join(map(re.escape, markers)))
        filled, slots = [], []
        for value in values:
            found = marker.findall(value)
            slots += [markers.index(m) for m in found]
            filled.append('"' + "%s".join(_encode_string(piece)[1:-1].replace("%", "%%")
                                          for piece in marker.split(value)) + '"')
        fills = iter(filled)
        fmt = _PLACEHOLDER.sub(lambda m: next(fills) if m.group(0) == "%s" else m.group(0),
                               template + self._args_tail(batch_id))
        fixed = sum(len(k.encode("utf-8")) + len(marker.sub("", v).encode("utf-8")) for k, v in subs.items())
        sized = [markers.index(m) for v in subs.values() for m in marker.findall(v)]
        return fmt, slots, fixed, sized

    def _args_tail(self, batch_id: str) -> str:
        q = _encode_string
        tail = f',"custom_args":{{"{ARG_ISSUE}":{q(self.issue_arg)},"{ARG_BATCH}":{q(batch_id)},"{ARG_RECIPIENT}":"'
        return tail.replace("%", "%%") + '%d"}}'

    def _shape(self, subs: Mapping[str, str], headers: Mapping[str, str]) -> tuple[str, int, bool]:
        """The %-template of one personalization for these substitution and header names (values left as %s)."""
        for name in headers:
            if name.lower() in FORBIDDEN_HEADERS:
                raise ValueError(f"header {name} cannot be set through SendGrid")
        q = _encode_string

        def key(name: str) -> str:
            return q(name).replace("%", "%%")
        template = ('{"to":[{"email":%s}],"substitutions":{' + ",".join(f"{key(k)}:%s" for k in subs)
                    + '},"headers":{"Message-ID":%s' + "".join(f",{key(k)}:%s" for k in headers if k != "Message-ID")
                    + "}")
        return template, sum(len(k) for k in subs), "Message-ID" not in headers


class BatchPreparer:
    """Serialises a batch's Mail Send requests ahead of sending: (body, ids in it, outcomes of those left out)."""

    def __init__(self, *, tracking: bool = False):
        self.tracking = tracking
        self._encoders: dict[tuple[IssueMeta, str], BatchEncoder] = {}

    def __call__(self, issue: IssueMeta, variant: RenderedVariant, recipients: Sequence[Recipient],
                 batch_id: str) -> list[tuple[str, list[int], list[Outcome]]]:
        encoder = self._encoder(issue, variant)
        return self._chunked(recipients, lambda chunk: encoder.encode(chunk, batch_id), lambda r: r.subscriber_id)

    def prepare_like(self, issue: IssueMeta, variant: RenderedVariant, prototype: Recipient, markers: Sequence[str],
                     rows: Sequence[tuple[int, Sequence[str]]], batch_id: str) -> list[tuple[str, list[int], list[Outcome]]]:
        """What calling this preparer gives, for recipients described as in ``BatchEncoder.encode_like``."""
        encoder = self._encoder(issue, variant)
        return self._chunked(rows, lambda chunk: encoder.encode_like(prototype, markers, chunk, batch_id),
                             lambda row: row[0])

    @staticmethod
    def _chunked(items: Sequence, encode: Callable, id_of: Callable) -> list[tuple[str, list[int], list[Outcome]]]:
        out = []
        for start in range(0, len(items), MAX_PERSONALIZATIONS):
            chunk = items[start:start + MAX_PERSONALIZATIONS]
            body, refused = encode(chunk)
            left_out = {o.subscriber_id for o in refused}
            out.append((body, [id_of(item) for item in chunk if id_of(item) not in left_out], refused))
        return out

    def _encoder(self, issue: IssueMeta, variant: RenderedVariant) -> BatchEncoder:
        key = (issue, variant.key)
        encoder = self._encoders.get(key)
        if encoder is None:
            if len(self._encoders) > 64:
                self._encoders.clear()
            encoder = self._encoders[key] = BatchEncoder(issue, variant, tracking=self.tracking)
        return encoder

    def clear(self) -> None:
        self._encoders.clear()


def message_payload(msg: EmailMessage, *, tracking: bool = False) -> dict:
    """A Mail Send body for one EmailMessage: its addresses, subject, text and HTML parts and its safe headers."""
    to = [{"email": addr, **({"name": name} if name else {})} for name, addr in getaddresses(msg.get_all("To", []))]
    if not to or not msg["From"] or not msg["Subject"]:
        raise DeliveryError("a message for SendGrid needs To, From and Subject headers")
    content = []
    for subtype in ("plain", "html"):
        part = msg.get_body(preferencelist=(subtype,))
        if part is not None and part.get_content_type() == f"text/{subtype}":
            content.append({"type": f"text/{subtype}", "value": part.get_content()})
    if not content:
        raise DeliveryError("a message for SendGrid needs a text or HTML body")
    skip = FORBIDDEN_HEADERS | {"mime-version", "date"}
    headers = {k: str(v) for k, v in msg.items() if k.lower() not in skip}
    personalization: dict = {"to": to}
    if headers:
        personalization["headers"] = headers
    return {"personalizations": [personalization], "from": _address(str(msg["From"])), "subject": str(msg["Subject"]),
            "content": content, "tracking_settings": tracking_settings(tracking)}
