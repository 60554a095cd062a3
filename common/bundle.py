"""Patient bundle files, kept as one JSON text per entry instead of a tree of Python objects.

A bundle of 100,000 patients is 270 MB of JSON but ~1.2 GB as Python objects, and building that
tree is most of the cost of loading it. The offline transform needs each entry's NIKs, and the
resource itself only for the patients it changes; so the file stays bytes, cut into one slice
per entry. Each slice is parsed on its own and dropped (measured: 0.4 s for all slices against
2.2 s for one parse of the whole file), and an unchanged entry is written back as the very bytes
it was read as.

Slices are cut where the layout of ``json.dump(…, indent=2)``, orjson's ``OPT_INDENT_2`` and
``JSON.stringify(…, null, 2)`` puts entry boundaries, which is also the layout written here. That
this was right is proven by parsing every slice (:func:`parse_entry`): a file whose slices each
parse, joined by nothing but those separators, can only be that list of entries. Any other file
(compact JSON, other indents, a FHIR ``Bundle``, the sample with two arrays) is parsed whole once
and rewritten in the cut layout, so the transform always sees one form.

Reading a file means parsing every entry once to learn who it is (patient id and NIKs). For a
large file that runs in a forked child (:mod:`common._forked`) while the caller plans the
sheet; the output pass then parses only the entries it changes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from common._forked import CAN_FORK, Forked
from common._writer import BackgroundWriter
from common.errors import InputError
from common.patient import patient_id, patient_niks

INPUT_KEYS = ("patients_before_phone_update", "patients_after_phone_update")
OUTPUT_KEY = "patients_after_phone_update"

Entry = dict[str, Any]
#: One entry's JSON text as it stands in the output: 2-space indent, nested 4 spaces deep.
EntryText = bytes | memoryview
#: Who an entry is: its patient's id and NIKs.
EntryKeys = tuple[str | None, tuple[str, ...]]

#: From this many entries on, indexing in a child pays for the fork (~10 ms) and the pickling.
BACKGROUND_MIN_ENTRIES = 5_000

_HEAD = re.compile(rb'\{\n  "(?:' + b"|".join(k.encode() for k in INPUT_KEYS) + rb')": \[\n    \{')
_TAIL = b"\n    }\n  ]\n}"
_CLOSE = b"\n    }"  # an entry's last line
_BETWEEN = b",\n    "  # what separates two entries (after the closing brace, before the next)
_NESTED_OPEN, _NESTED_CLOSE = b"[\n  [\n    ", b"\n  ]\n]"
_ENTRY_END = re.compile(re.escape(_CLOSE + _BETWEEN + b"{"))


class MalformedEntry(InputError):
    """A slice of the bundle is not a ``{"resource": {…}}`` entry."""


@dataclass(slots=True)
class Bundle:
    texts: list[EntryText]
    #: ``keys[i]`` says who ``texts[i]`` is.
    keys: list[EntryKeys]


@contextmanager
def reading(
    raw: bytes, source: str, *, background: bool | None = None
) -> Iterator[Callable[[], Bundle]]:
    """Start reading a bundle file's bytes; call what this yields to get the :class:`Bundle`.

    ``background`` (default: by size) indexes the entries in a forked child meanwhile, so the
    caller's own work runs at the same time. The result is the same either way.
    """
    texts = cut_entries(raw)
    if background is None:
        background = texts is not None and len(texts) >= BACKGROUND_MIN_ENTRIES
    if texts is None or not background or not CAN_FORK:
        yield lambda: _read(raw, texts, source)
        return
    cut = texts
    with Forked(lambda: index_entries(cut)) as child:

        def result() -> Bundle:
            keys = child.result()
            return Bundle(cut, keys) if keys is not None else _read(raw, cut, source)

        yield result


def _read(raw: bytes, texts: list[EntryText] | None, source: str) -> Bundle:
    if texts is not None:
        try:
            return Bundle(texts, index_entries(texts))
        except MalformedEntry:
            pass  # it only looked cut-able: parse it whole, to rewrite it or to say what is wrong
    texts = rewrite_entries(raw, source)
    return Bundle(texts, index_entries(texts))


def index_entries(texts: Iterable[EntryText]) -> list[EntryKeys]:
    """Who each entry is; :class:`MalformedEntry` if a text is not an entry."""
    keys: list[EntryKeys] = []
    for text in texts:
        resource = parse_entry(text)["resource"]
        keys.append((patient_id(resource), tuple(dict.fromkeys(patient_niks(resource)))))
    return keys


def read_bundle(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError(f"bundle file not found: {path}") from None
    except OSError as exc:
        raise InputError(f"cannot read bundle file {path}: {exc}") from None


def cut_entries(raw: bytes) -> list[EntryText] | None:
    """Each entry's text, sliced out of ``raw`` without parsing it; None if ``raw`` is not laid
    out for cutting. Only parsing every slice (:func:`index_entries`) proves the cut right."""
    head = _HEAD.match(raw)
    stop = len(raw)
    while stop and raw[stop - 1] in b" \t\r\n":
        stop -= 1
    if head is None or not raw.endswith(_TAIL, head.end(), stop):
        return None
    view = memoryview(raw)
    start, end = head.end() - 1, stop - len(_TAIL) + len(_CLOSE)
    texts: list[EntryText] = []
    for boundary in _ENTRY_END.finditer(raw, start, end):
        texts.append(view[start : boundary.start() + len(_CLOSE)])
        start = boundary.end() - 1
    texts.append(view[start:end])
    return texts


def rewrite_entries(raw: bytes, source: str) -> list[EntryText]:
    """Each entry's text from a bundle in any layout, by parsing it whole (the slow, sure way)."""
    return [entry_text(entry) for entry in parse_bundle(raw, source)]


def parse_bundle(raw: bytes, source: str) -> list[Entry]:
    """The entries of a bundle file's bytes, parsed whole.

    Accepts the sample's ``{"patients_before_phone_update": […]}`` (or ``…_after…``), a FHIR
    ``Bundle`` with ``entry``, or a bare list.
    """
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"bundle file {source} is not valid JSON: {exc}") from None
    return _entries_of(data, source)


def _entries_of(data: object, source: str) -> list[Entry]:
    """The entry list of a parsed bundle, checked to be ``{"resource": {…}}`` objects."""
    if isinstance(data, dict):
        for key in (*INPUT_KEYS, "entry"):
            if isinstance(data.get(key), list):
                data = data[key]
                break
    if not isinstance(data, list) or not all(
        isinstance(e, dict) and isinstance(e.get("resource"), dict) for e in data
    ):
        raise InputError(
            f'{source}: expected patients as a list of {{"resource": …}} entries under '
            f"{INPUT_KEYS[0]!r}, {INPUT_KEYS[1]!r} or a Bundle's 'entry'"
        )
    return data


def parse_entry(text: EntryText) -> Entry:
    try:
        entry = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise MalformedEntry(f"an entry is not valid JSON: {exc}") from None
    if not isinstance(entry, dict) or not isinstance(entry.get("resource"), dict):
        raise MalformedEntry('an entry is not a {"resource": {…}} object')
    return entry


def entry_text(entry: Entry) -> EntryText:
    """``entry`` serialised as it stands in the output (see :data:`EntryText`)."""
    # orjson indents from column 0 only; nested two lists deep, an entry sits exactly where the
    # output wants it, and slicing off the brackets is cheaper than re-indenting every line.
    nested = orjson.dumps([[entry]], option=orjson.OPT_INDENT_2)
    return memoryview(nested)[len(_NESTED_OPEN) : -len(_NESTED_CLOSE)]


def write_bundle(texts: Iterable[EntryText], out: BinaryIO) -> None:
    """``{"patients_after_phone_update": […]}``, 2-space indent, UTF-8, trailing newline.

    Byte for byte what ``orjson.dumps(…, option=OPT_INDENT_2)`` writes for the same entries.
    The writing itself runs on a helper thread while ``texts`` produces the next entries.
    """
    iterator = iter(texts)
    first = next(iterator, None)
    if first is None:
        out.write(b'{\n  "%s": []\n}\n' % OUTPUT_KEY.encode())
        return
    with BackgroundWriter(out) as writer:
        writer.write(b'{\n  "%s": [\n    ' % OUTPUT_KEY.encode())
        writer.write(first)
        for text in iterator:
            writer.write(_BETWEEN)
            writer.write(text)
        writer.write(b"\n  ]\n}\n")
