"""Patient bundle files, read in two streaming passes instead of as a tree of Python objects.

A bundle of 100,000 patients is 270 MB of JSON but ~1.2 GB as Python objects; one of 1,000,000
is 2.65 GB of JSON. The offline transform needs each entry's NIKs, and the resource itself only
for the patients it changes. So the file is read twice, a few MB at a time, and never held whole:

1. the **index** pass cuts the file into entries and parses each on its own to learn its NIKs,
   keeping only where each entry starts and ends and its NIKs as integers (~40 bytes an entry);
2. the **output** pass copies the file through, parsing and rewriting only the entries that
   change; every other byte is written as it was read, escapes and number spellings included.

Entries are cut where the layout of ``json.dump(…, indent=2)``, orjson's ``OPT_INDENT_2`` and
``JSON.stringify(…, null, 2)`` puts entry boundaries, which is also the layout written here. That
this was right is proven by parsing every entry in the index pass: a file whose pieces each
parse, joined by nothing but those separators, can only be that list of entries. Any other file
(compact JSON, other indents, a FHIR ``Bundle``, the sample with two arrays) is parsed whole once
and rewritten in the cut layout in memory, so the rest sees one form (such files are not read in
bounded memory; every bundle this project writes is in the cut layout).

The index pass runs in a forked child (:mod:`common._forked`) for a large file, while the caller
reads and plans the sheet.
"""

from __future__ import annotations

import os
import re
import stat
from array import array
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

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

#: From this many bytes on, indexing in a child pays for the fork (~10 ms) and the pickling.
BACKGROUND_MIN_BYTES = 8 << 20
#: How much of the file is read at once.
BLOCK_BYTES = 4 << 20

_HEAD = re.compile(rb'\{\n  "(?:' + b"|".join(k.encode() for k in INPUT_KEYS) + rb')": \[\n    \{')
_TAIL = b"\n    }\n  ]\n}"
_CLOSE = b"\n    }"  # an entry's last line
_BETWEEN = b",\n    "  # what separates two entries (after the closing brace, before the next)
_NESTED_OPEN, _NESTED_CLOSE = b"[\n  [\n    ", b"\n  ]\n]"
_ENTRY_END = re.compile(re.escape(_CLOSE + _BETWEEN + b"{"))
_OUT_HEAD = b'{\n  "%s": [\n    ' % OUTPUT_KEY.encode()
_OUT_TAIL = b"\n  ]\n}\n"
_EMPTY = b'{\n  "%s": []\n}\n' % OUTPUT_KEY.encode()
_SPACE = b" \t\r\n"


class MalformedEntry(InputError):
    """A piece of the bundle is not a ``{"resource": {…}}`` entry."""


class _Data(Protocol):
    """Random access to a bundle's bytes: a file, or bytes in memory."""

    size: int

    def read(self, start: int, stop: int) -> bytes | memoryview: ...


class _FileData:
    """A regular file read with ``pread``, which leaves the descriptor's offset alone (a forked
    child shares it)."""

    def __init__(self, fd: int) -> None:
        self.fd, self.size = fd, os.fstat(fd).st_size

    def read(self, start: int, stop: int) -> bytes:
        data = os.pread(self.fd, stop - start, start)
        while len(data) < stop - start:  # pread may return less than asked; EOF means truncated
            more = os.pread(self.fd, stop - start - len(data), start + len(data))
            if not more:
                raise InputError("the bundle file changed size while it was read")
            data += more
        return data


class _MemoryData:
    def __init__(self, raw: bytes) -> None:
        self.view, self.size = memoryview(raw), len(raw)

    def read(self, start: int, stop: int) -> memoryview:
        return self.view[start:stop]


@dataclass(slots=True)
class BundleIndex:
    """Where each entry sits and which NIKs it carries, in flat arrays (pickled cheaply)."""

    #: Entry ``i`` is the bytes ``starts[i]:ends[i]`` of the file.
    starts: array[int]
    ends: array[int]
    #: The 16-digit NIKs of every entry, as integers, and the entry that carries each. Other
    #: values cannot match a sheet row (whose NIK is always 16 digits) and are not kept.
    niks: array[int]
    holders: array[int]


@dataclass(slots=True)
class Bundle:
    data: _Data
    index: BundleIndex
    #: Whether the file was not in the cut layout and was parsed whole and rewritten.
    rewritten: bool = False

    def __len__(self) -> int:
        return len(self.index.starts)

    def entry(self, i: int) -> Entry:
        """Entry ``i`` parsed (random access: for the few entries looked up by index)."""
        return parse_entry(self.data.read(self.index.starts[i], self.index.ends[i]))

    def patient_id(self, i: int) -> str | None:
        return patient_id(self.entry(i)["resource"])

    def write(
        self, out: BinaryIO, edits: Iterable[int], edit: Callable[[int, EntryText], EntryText]
    ) -> None:
        """``{"patients_after_phone_update": […]}``, 2-space indent, UTF-8, trailing newline.

        Entry ``i`` of ``edits`` (ascending) is written as ``edit(i, its text)``; every other
        byte as read. Byte for byte what ``orjson.dumps(…, option=OPT_INDENT_2)`` writes for the
        same entries; the writing itself runs on a helper thread.
        """
        if not len(self):
            out.write(_EMPTY)
            return
        starts, ends = self.index.starts, self.index.ends
        blocks = _Blocks(self.data, starts[0], ends[-1])
        with BackgroundWriter(out) as writer:
            writer.write(_OUT_HEAD)
            for i in edits:
                for piece in blocks.take(starts[i]):
                    writer.write(piece)
                writer.write(edit(i, blocks.view(ends[i])))
            for piece in blocks.take(ends[-1]):
                writer.write(piece)
            writer.write(_OUT_TAIL)


class _Blocks:
    """Reads ``data[start:stop]`` front to back a block at a time, handing out views of them."""

    def __init__(self, data: _Data, start: int, stop: int) -> None:
        self.data, self.stop = data, stop
        self.block: bytes | memoryview = b""
        #: ``block`` holds the bytes from ``base`` on; ``pos`` is how far the caller has come.
        self.base = self.pos = start

    def take(self, upto: int) -> Iterator[memoryview]:
        """The bytes from ``pos`` up to ``upto``, in block-sized pieces."""
        while self.pos < upto:
            if self.pos == self.base + len(self.block):
                self._extend(self.pos + 1)
            end = min(upto, self.base + len(self.block))
            piece = memoryview(self.block)[self.pos - self.base : end - self.base]
            self.pos = end
            yield piece

    def view(self, upto: int) -> memoryview:
        """The bytes from ``pos`` up to ``upto``, in one piece."""
        if upto > self.base + len(self.block):
            self._extend(upto)
        piece = memoryview(self.block)[self.pos - self.base : upto - self.base]
        self.pos = upto
        return piece

    def find(self, pattern: re.Pattern[bytes]) -> int | None:
        """Where ``pattern`` next matches from ``pos`` on, reading on as needed; None if not
        before ``stop``."""
        while True:
            found = pattern.search(self.block, self.pos - self.base)
            if found is not None:
                return self.base + found.start()
            if self.base + len(self.block) >= self.stop:
                return None
            self._extend(self.base + len(self.block) + 1)

    def _extend(self, upto: int) -> None:
        """Make the block reach ``upto`` at least, keeping what lies from ``pos`` on (a piece
        that is larger than a block doubles what is read, so it is not read over and over)."""
        end = self.base + len(self.block)
        keep = memoryview(self.block)[self.pos - self.base :]
        fresh = self.data.read(end, min(self.stop, max(upto, end + max(BLOCK_BYTES, len(keep)))))
        self.block = b"".join((keep, fresh)) if len(keep) else fresh
        self.base = self.pos


def index_bundle(data: _Data, start: int, stop: int) -> BundleIndex:
    """Cut ``data[start:stop]`` (the entries, first ``{`` to last ``}``) and parse every piece;
    :class:`MalformedEntry` if one is not an entry."""
    index = BundleIndex(array("q"), array("q"), array("q"), array("q"))
    starts, ends, niks, holders = index.starts, index.ends, index.niks, index.holders
    blocks = _Blocks(data, start, stop)
    while blocks.pos < stop:
        boundary = blocks.find(_ENTRY_END)
        end = stop if boundary is None else boundary + len(_CLOSE)
        number = len(starts)
        starts.append(blocks.pos)
        ends.append(end)
        resource = parse_entry(blocks.view(end))["resource"]
        for nik in dict.fromkeys(patient_niks(resource)):
            if len(nik) == 16 and nik.isascii() and nik.isdigit():
                niks.append(int(nik))
                holders.append(number)
        if boundary is not None:
            blocks.pos += len(_BETWEEN)  # within the block: the match that found it spans it
    return index


@contextmanager
def reading(
    bundle: Path | bytes, source: str, *, background: bool | None = None
) -> Iterator[Callable[[], Bundle]]:
    """Start reading a bundle file (or its bytes); call what this yields to get the
    :class:`Bundle`, which stays readable until the block ends.

    ``background`` (default: by size) indexes the entries in a forked child meanwhile, so the
    caller's own work runs at the same time. The result is the same either way.
    """
    with ExitStack() as stack:
        data = _open(bundle, stack) if isinstance(bundle, Path) else _MemoryData(bundle)
        span = _entries_span(data)
        if background is None:
            background = span is not None and data.size >= BACKGROUND_MIN_BYTES
        if span is None or not background or not CAN_FORK:
            yield lambda: _read(data, span, source)
            return
        first, last = span
        child = stack.enter_context(Forked(lambda: index_bundle(data, first, last)))

        def result() -> Bundle:
            index = child.result()
            return Bundle(data, index) if index is not None else _read(data, span, source)

        yield result


def _open(path: Path, stack: ExitStack) -> _Data:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise InputError(f"bundle file not found: {path}") from None
    except OSError as exc:
        raise InputError(f"cannot read bundle file {path}: {exc}") from None
    stack.callback(os.close, fd)
    if stat.S_ISREG(os.fstat(fd).st_mode):
        return _FileData(fd)
    with os.fdopen(os.dup(fd), "rb") as stream:  # a pipe or a device: no second pass possible
        return _MemoryData(stream.read())


def _read(data: _Data, span: tuple[int, int] | None, source: str) -> Bundle:
    if span is not None:
        try:
            return Bundle(data, index_bundle(data, *span))
        except MalformedEntry:
            pass  # it only looked cut-able: parse it whole, to rewrite it or to say what is wrong
    whole = _MemoryData(rewrite_bundle(data.read(0, data.size), source))
    span = _entries_span(whole)
    index = index_bundle(whole, *span) if span else index_bundle(whole, 0, 0)
    return Bundle(whole, index, rewritten=True)


def _entries_span(data: _Data) -> tuple[int, int] | None:
    """Where the entries lie (first ``{`` to last ``}``) if the file is laid out for cutting;
    None if not. Only parsing every entry (:func:`index_bundle`) proves the cut right."""
    head = _HEAD.match(data.read(0, min(data.size, 256)))
    if head is None:
        return None
    tail_start = max(head.end(), data.size - 4096)
    tail = bytes(data.read(tail_start, data.size)).rstrip(_SPACE)
    if not tail.endswith(_TAIL):
        return None
    return head.end() - 1, tail_start + len(tail) - len(_TAIL) + len(_CLOSE)


def read_bundle(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError(f"bundle file not found: {path}") from None
    except OSError as exc:
        raise InputError(f"cannot read bundle file {path}: {exc}") from None


def rewrite_bundle(raw: bytes | memoryview, source: str) -> bytes:
    """A bundle in any layout, parsed whole and written again in the cut layout."""
    texts = [entry_text(entry) for entry in parse_bundle(raw, source)]
    if not texts:
        return b'{\n  "%s": []\n}\n' % INPUT_KEYS[0].encode()
    return b"".join(
        [b'{\n  "%s": [\n    ' % INPUT_KEYS[0].encode(), _BETWEEN.join(texts), _OUT_TAIL]
    )


def parse_bundle(raw: bytes | memoryview, source: str) -> list[Entry]:
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
