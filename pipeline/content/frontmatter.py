"""Split a Markdown file into YAML front matter and body, keeping line numbers for messages."""

from __future__ import annotations

from dataclasses import dataclass

import yaml

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):
    """SafeLoader that keeps timestamps as strings, so we parse and check them ourselves."""


_Loader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for ch, resolvers in _BaseLoader.yaml_implicit_resolvers.copy().items()
}


class FrontMatterError(ValueError):
    def __init__(self, line: int, message: str):
        self.line = line
        super().__init__(message)


@dataclass(frozen=True, kw_only=True)
class Document:
    data: dict
    key_lines: dict[str, int]
    body: str
    body_line: int
    fm_end_line: int


def split(text: str) -> tuple[list[str], int, int]:
    """Return (lines, first front-matter line index, closing '---' index), 0-based."""
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].rstrip("\r\n").strip() != "---":
        raise FrontMatterError(1, "the file must start with a line '---' that opens the YAML front matter")
    for i in range(1, len(lines)):
        if lines[i].rstrip("\r\n").rstrip() in ("---", "..."):
            return lines, 1, i
    raise FrontMatterError(len(lines), "the front matter is never closed; add a line '---' after it")


def parse(text: str) -> Document:
    lines, start, end = split(text)
    fm = "".join(lines[start:end])
    try:
        node = yaml.compose(fm, Loader=_Loader)
        data = yaml.load(fm, Loader=_Loader) if node is not None else {}
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = start + 1 + (mark.line if mark else 0)
        raise FrontMatterError(line, f"invalid YAML ({exc.problem or exc.context}); check quoting and indentation") from None
    except yaml.YAMLError as exc:
        raise FrontMatterError(start + 1, f"invalid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise FrontMatterError(start + 1, "the front matter must be a mapping of fields such as 'title: …'")
    key_lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, _ in node.value:
            key_lines[str(key_node.value)] = start + 1 + key_node.start_mark.line
    return Document(data=data, key_lines=key_lines, body="".join(lines[end + 1:]),
                    body_line=end + 2, fm_end_line=end + 1)
