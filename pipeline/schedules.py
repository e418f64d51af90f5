"""The schedules.yaml model and pure fire-time arithmetic. Nothing here reads the clock."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from cronsim import CronSim, CronSimError

from pipeline.errors import ConfigError, Problem

TASKS = ("build-feeds", "send-digest", "fetch-sources")
CADENCES = ("weekly", "monthly")
_DURATION_RE = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DIGEST_KEYS = ("title", "cadence", "topics", "deliver_at", "local_time")
# A deliver_at: local digest is sent in waves (a recipient's local_time in their zone): this often, a run sends
# every wave that has come and is within its grace. Zones are whole quarter hours from UTC (Kathmandu: +05:45).
WAVE_EVERY = timedelta(minutes=15)
DELIVER_AT = ("schedule", "local")
_LOCAL_TIME_RE = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
_DOW_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, kw_only=True)
class Digest:
    name: str
    title: str
    cadence: str
    topics: tuple[str, ...] | None  # None means all topics
    deliver_at: str = "schedule"  # "local": each subscriber at local_time in their own zone
    local_time: time | None = None


@dataclass(frozen=True, kw_only=True)
class Job:
    id: str
    task: str
    cron: str
    timezone: str
    misfire_grace: timedelta
    digest: str | None = None

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def previous_fire(self, at: datetime) -> datetime:
        """The latest fire time at or before ``at``."""
        # cronsim's reverse iteration is strict, so start one minute past the floor of ``at``.
        start = self._local(at).replace(second=0, microsecond=0) + timedelta(minutes=1)
        return next(CronSim(self.cron, start, reverse=True))

    def fire_before(self, fire: datetime) -> datetime:
        """The fire time strictly before ``fire``."""
        return next(CronSim(self.cron, self._local(fire), reverse=True))

    def next_fire(self, after: datetime) -> datetime:
        return next(CronSim(self.cron, self._local(after)))

    def _local(self, at: datetime) -> datetime:
        """``at`` as a real wall-clock time in the job's zone. Through UTC: ``astimezone`` to the zone a datetime
        already has changes nothing, so a time in a DST gap (02:30 on the spring-forward night, which no clock
        shows) would otherwise reach cron as a wall time that is not the instant it means."""
        return at.astimezone(UTC).astimezone(self.tz)

    def dow_names_cron(self) -> str:
        """The cron with numeric days of the week as names, which every cron library reads the same way."""
        fields = self.cron.split()
        fields[4] = re.sub(r"\d+", lambda m: _DOW_NAMES[int(m.group())] if int(m.group()) <= 7 else m.group(), fields[4])
        return " ".join(fields)


@dataclass(frozen=True, kw_only=True)
class Schedule:
    timezone: str
    digests: dict[str, Digest]
    jobs: tuple[Job, ...]

    def digest(self, name: str) -> Digest:
        if name not in self.digests:
            raise ConfigError(f"no digest named {name!r} in schedules.yaml; known: {', '.join(sorted(self.digests)) or 'none'}")
        return self.digests[name]

    def job_for_digest(self, name: str) -> Job:
        self.digest(name)
        for job in self.jobs:
            if job.task == "send-digest" and job.digest == name:
                return job
        raise ConfigError(f"schedules.yaml: no job sends digest {name!r}; add one with task: send-digest, digest: {name}")


def parse_duration(value: object) -> timedelta:
    if isinstance(value, int) and not isinstance(value, bool):
        return timedelta(seconds=value)
    m = _DURATION_RE.match(str(value))
    if not m:
        raise ValueError(f"{value!r} is not a duration; write e.g. 30m, 6h or 1d")
    return timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])


def _line_of(node, key: str, default: int) -> int:
    if isinstance(node, yaml.MappingNode):
        for k, _ in node.value:
            if k.value == key:
                return k.start_mark.line + 1
    return default


def _local_time(spec: dict, deliver_at: str, bad) -> time | None | bool:
    """The digest's local_time, None when it has none, or False after reporting a problem."""
    value = spec.get("local_time")
    if value is None:
        if deliver_at == "local":
            bad("local_time", 'is required with deliver_at: local; write it in quotes, e.g. "08:00"')
            return False
        return None
    if deliver_at != "local":
        bad("local_time", "applies only with deliver_at: local")
        return False
    if isinstance(value, int) and not isinstance(value, bool):  # YAML reads 8:00 unquoted as 480 (base 60)
        bad("local_time", f'{value!r} is not a time of day; write it in quotes as HH:MM, e.g. "08:00"')
        return False
    m = _LOCAL_TIME_RE.match(str(value))
    if not m:
        bad("local_time", f'{value!r} is not a time of day; write it in quotes as HH:MM, 00:00 to 23:59, e.g. "08:00"')
        return False
    return time(int(m.group(1)), int(m.group(2)))


def load_schedule(path: Path, *, topic_ids: frozenset[str] | None = None) -> tuple[Schedule | None, list[Problem]]:
    """Parse schedules.yaml. Every problem names the line and field."""
    shown = str(path)
    problems: list[Problem] = []

    def bad(line: int, field: str, message: str) -> None:
        problems.append(Problem(path=shown, line=line, field=field, message=message))

    try:
        text = Path(path).read_text(encoding="utf-8")
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except FileNotFoundError:
        return None, [Problem(path=shown, line=1, field="file", message="not found; copy schedules.yaml from the project root")]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        return None, [Problem(path=shown, line=(mark.line + 1) if mark else 1, field="yaml", message=f"invalid YAML: {getattr(exc, 'problem', exc)}")]
    if not isinstance(data, dict):
        return None, [Problem(path=shown, line=1, field="file", message="must be a mapping with timezone, digests and jobs")]

    tz = data.get("timezone", "UTC")
    try:
        ZoneInfo(str(tz))
    except (ZoneInfoNotFoundError, ValueError):
        bad(_line_of(root, "timezone", 1), "timezone", f"{tz!r} is not a time zone; use an IANA name such as America/New_York")
        tz = "UTC"

    digests: dict[str, Digest] = {}
    raw_digests = data.get("digests") or {}
    dnode = next((v for k, v in root.value if k.value == "digests"), None) if isinstance(root, yaml.MappingNode) else None
    if not isinstance(raw_digests, dict):
        bad(_line_of(root, "digests", 1), "digests", "must be a mapping of digest names to {title, cadence, topics}")
        raw_digests = {}
    named: set[str] = set()  # digests defined, well or badly: a job naming a bad one is not a second problem
    for name, spec in raw_digests.items():
        named.add(str(name))
        line = _line_of(dnode, name, 1)
        field = f"digests.{name}"
        if not isinstance(spec, dict):
            bad(line, field, "must be {title, cadence, topics}")
            continue
        unknown_keys = [str(k) for k in spec if k not in DIGEST_KEYS]
        snode = next((v for k, v in dnode.value if k.value == name), None) if isinstance(dnode, yaml.MappingNode) else None
        for key in unknown_keys:
            bad(_line_of(snode, key, line), f"{field}.{key}", f"is not a digest setting; use {', '.join(DIGEST_KEYS)}")
        if unknown_keys:
            continue
        deliver_at = spec.get("deliver_at", "schedule")
        if deliver_at not in DELIVER_AT:
            bad(_line_of(snode, "deliver_at", line), f"{field}.deliver_at",
                f"{deliver_at!r} is not a choice; use schedule (everyone at the job's time) or local")
            continue
        local_time = _local_time(spec, deliver_at, lambda f, m, snode=snode, line=line, field=field: bad(
            _line_of(snode, f, line), f"{field}.{f}", m))
        if local_time is False:
            continue
        if not isinstance(spec.get("title"), str) or not spec["title"].strip():
            bad(line, f"{field}.title", "is required: the subject line of the digest")
            continue
        if spec.get("cadence") not in CADENCES:
            bad(line, f"{field}.cadence", f"{spec.get('cadence')!r} is not a cadence; use weekly or monthly")
            continue
        topics = spec.get("topics", "all")
        if topics == "all":
            chosen = None
        elif isinstance(topics, list) and topics and all(isinstance(t, str) for t in topics):
            unknown = [t for t in topics if topic_ids is not None and t not in topic_ids]
            if unknown:
                bad(line, f"{field}.topics", f"unknown topic ids {', '.join(unknown)}; see content/topics.yaml")
                continue
            chosen = tuple(topics)
        else:
            bad(line, f"{field}.topics", "must be 'all' or a list of topic ids")
            continue
        digests[str(name)] = Digest(name=str(name), title=spec["title"].strip(), cadence=spec["cadence"], topics=chosen,
                                    deliver_at=deliver_at, local_time=local_time)

    jobs: list[Job] = []
    raw_jobs = data.get("jobs") or []
    jnode = next((v for k, v in root.value if k.value == "jobs"), None) if isinstance(root, yaml.MappingNode) else None
    if not isinstance(raw_jobs, list):
        bad(_line_of(root, "jobs", 1), "jobs", "must be a list of {id, task, cron}")
        raw_jobs = []
    seen: set[str] = set()
    for i, spec in enumerate(raw_jobs):
        line = (jnode.value[i].start_mark.line + 1) if isinstance(jnode, yaml.SequenceNode) else 1
        field = f"jobs[{i}]"
        if not isinstance(spec, dict):
            bad(line, field, "must be {id, task, cron}")
            continue
        job_id = spec.get("id")
        if not isinstance(job_id, str) or not job_id or job_id in seen:
            bad(line, f"{field}.id", "needs a unique id, such as weekly-digest")
            continue
        seen.add(job_id)
        field = f"jobs.{job_id}"
        task = spec.get("task")
        if task not in TASKS:
            bad(line, f"{field}.task", f"{task!r} is not a task; use one of: {', '.join(TASKS)}")
            continue
        cron = spec.get("cron")
        try:
            if not isinstance(cron, str) or len(cron.split()) != 5:
                raise CronSimError("needs five fields")
            CronSim(cron, datetime(2026, 1, 1))
        except (CronSimError, ValueError) as exc:
            bad(line, f"{field}.cron", f"{cron!r} is not a cron expression ({exc}); write e.g. '0 8 * * mon'")
            continue
        job_tz = spec.get("timezone", tz)
        try:
            ZoneInfo(str(job_tz))
        except (ZoneInfoNotFoundError, ValueError):
            bad(line, f"{field}.timezone", f"{job_tz!r} is not a time zone")
            continue
        try:
            grace = parse_duration(spec.get("misfire_grace", "10m"))
        except ValueError as exc:
            bad(line, f"{field}.misfire_grace", str(exc))
            continue
        digest = spec.get("digest")
        if task == "send-digest" and digest not in digests and str(digest) in named:
            continue  # its digest's own problem is reported
        if task == "send-digest" and digest not in digests:
            bad(line, f"{field}.digest", f"{digest!r} is not a digest defined under digests:")
            continue
        if task == "send-digest" and digests[digest].deliver_at == "local" and grace < WAVE_EVERY:
            # Waves go out every 15 minutes: a shorter grace would skip a wave whenever a run starts late.
            bad(line, f"{field}.misfire_grace", f"{spec.get('misfire_grace', '10m')!r} is too short for a digest sent "
                "in local-time waves (they go out every 15 minutes); use at least 15m, e.g. 6h")
            continue
        jobs.append(Job(id=job_id, task=task, cron=cron, timezone=str(job_tz), misfire_grace=grace,
                        digest=digest if task == "send-digest" else None))
    if problems:
        return None, problems
    return Schedule(timezone=str(tz), digests=digests, jobs=tuple(jobs)), []


def require_schedule(path: Path, *, topic_ids: frozenset[str] | None = None) -> Schedule:
    schedule, problems = load_schedule(path, topic_ids=topic_ids)
    if schedule is None:
        raise ConfigError("\n".join(str(p) for p in problems))
    return schedule
