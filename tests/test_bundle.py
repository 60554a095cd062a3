"""Bundle files as entry texts: cut where the layout allows, rewritten where it does not.

Whichever way a file is read, the entries are the same and the output is written in one layout.
"""

import io
import json
import os
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common import bundle as bundle_module
from common._forked import Forked
from common.bundle import (
    OUTPUT_KEY,
    Bundle,
    MalformedEntry,
    entry_text,
    reading,
    rewrite_bundle,
)
from common.errors import InputError
from common.transform import transform

NOW = "2025-09-23T23:45:00.123456+07:00"
NIK = "https://fhir.kemkes.go.id/id/nik"

# JSON values as patients carry them, including strings that spell out the entry separator,
# non-ASCII names and escapes.
_leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.text(max_size=12)
    | st.sampled_from(["\n    },\n    {\n", "}, {", '"\\', "Siti Nurhaliza Ω", "\u2028"])
)
_json_values = st.recursive(
    _leaves,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)
_entries = st.lists(
    st.fixed_dictionaries(
        {"resource": st.dictionaries(st.text(max_size=8), _json_values, max_size=5)},
        optional={"fullUrl": st.text(max_size=10)},
    ),
    max_size=6,
)
#: Blocks smaller than an entry, smaller than a separator, and the real size.
_block_sizes = st.sampled_from([5, 64, bundle_module.BLOCK_BYTES])


def orjson_layout(entries: list[Any], key: str = "patients_before_phone_update") -> bytes:
    return orjson.dumps({key: entries}, option=orjson.OPT_INDENT_2)


@contextmanager
def blocks_of(size: int) -> Iterator[None]:
    saved, bundle_module.BLOCK_BYTES = bundle_module.BLOCK_BYTES, size
    try:
        yield
    finally:
        bundle_module.BLOCK_BYTES = saved


def read(raw: bytes) -> Bundle:
    with reading(raw, "test", background=False) as bundle:
        return bundle()


def written(bundle: Bundle, edits: dict[int, Any] | None = None) -> bytes:
    """The bundle written back, entry ``i`` of ``edits`` replaced by ``edits[i]``."""
    changes = edits or {}
    out = io.BytesIO()
    bundle.write(out, sorted(changes), lambda i, _text: entry_text(changes[i]))
    return out.getvalue()


@pytest.mark.slow  # 200 examples: ~9 s, not in scripts/test-fast
@settings(max_examples=200)
@given(
    _entries,
    st.sampled_from(["orjson", "json-ascii", "json-utf8", "compact", "indent-4"]),
    _block_sizes,
)
def test_cut_or_rewritten_a_file_gives_back_its_entries(
    entries: list[Any], layout: str, block: int
) -> None:
    doc = {"patients_before_phone_update": entries}
    raw = {
        "orjson": lambda: orjson_layout(entries),
        "json-ascii": lambda: json.dumps(doc, indent=2).encode(),
        "json-utf8": lambda: json.dumps(doc, indent=2, ensure_ascii=False).encode(),
        "compact": lambda: orjson.dumps(doc),
        "indent-4": lambda: json.dumps(doc, indent=4).encode(),
    }[layout]()
    with blocks_of(block):
        bundle = read(raw)
        if layout in ("orjson", "json-ascii", "json-utf8") and entries:
            assert not bundle.rewritten, "the two-space layouts are cut, not parsed whole"
        assert [bundle.entry(i) for i in range(len(bundle))] == entries
        assert orjson.loads(written(bundle)) == {OUTPUT_KEY: entries}


@pytest.mark.slow  # ~5 s, not in scripts/test-fast
@given(_entries, st.data(), _block_sizes)
def test_output_is_byte_for_byte_what_orjson_writes(
    entries: list[Any], data: st.DataObject, block: int
) -> None:
    edited = data.draw(st.dictionaries(st.integers(0, max(len(entries) - 1, 0)), _entries))
    edits = {i: e[0] for i, e in edited.items() if i < len(entries) and e}
    after = [edits.get(i, e) for i, e in enumerate(entries)]
    expected = orjson.dumps({OUTPUT_KEY: after}, option=orjson.OPT_INDENT_2) + b"\n"
    with blocks_of(block):
        for raw in (orjson_layout(entries, OUTPUT_KEY), orjson.dumps({OUTPUT_KEY: entries})):
            # so a transform's output can be its next input
            assert written(read(raw), edits) == expected


def test_unchanged_entries_keep_their_exact_bytes() -> None:
    raw = json.dumps(
        {"patients_before_phone_update": [{"resource": {"name": "Séna", "n": 1.50}}]}, indent=2
    ).encode()
    out = written(read(raw))
    assert b'"S\\u00e9na"' in out and b'"n": 1.5' in out


def test_a_file_that_only_looks_cut_able_is_caught_by_parsing_the_pieces() -> None:
    # A valid bundle whose second-level lines happen to sit at the entries' indentation.
    raw = (
        b'{\n  "patients_before_phone_update": [\n    {\n      "resource": {"id": "a", "c": [\n'
        b'    {"x": 1\n    },\n    {"y": 2}\n      ]}\n    }\n  ]\n}'
    )
    with pytest.raises(MalformedEntry):  # the cut is wrong here, and parsing the pieces says so
        bundle_module.index_bundle(bundle_module._MemoryData(raw), 38, len(raw) - 8)
    bundle = read(raw)
    assert bundle.rewritten
    assert orjson.loads(written(bundle))[OUTPUT_KEY] == [
        {"resource": {"id": "a", "c": [{"x": 1}, {"y": 2}]}}
    ]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{\n  "patients_before_phone_update": [\n    {\n      "resource": {', "not valid JSON"),
        (b'{"patients_before_phone_update": [{"id": "p1"}]}', 'list of {"resource": …} entries'),
        (b'{"patients": []}', 'list of {"resource": …} entries'),
        (
            b'{\n  "patients_before_phone_update": [\n    {\n      "resource": 1\n    }\n  ]\n}',
            "entries",
        ),
    ],
)
def test_unusable_files_are_input_errors(raw: bytes, message: str) -> None:
    with pytest.raises(InputError, match=message), reading(raw, "test") as bundle:
        transform([], bundle, io.BytesIO(), last_updated=NOW)


def test_other_shapes_are_read_whole() -> None:
    fhir = {"resourceType": "Bundle", "entry": [{"fullUrl": "urn:1", "resource": {"id": "1"}}]}
    sample_like = {
        "patients_before_phone_update": [{"resource": {"id": "before"}}],
        "patients_after_phone_update": [{"resource": {"id": "after"}}],
    }
    for doc, first in ((fhir, fhir["entry"][0]), (sample_like, {"resource": {"id": "before"}})):
        bundle = read(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
        assert bundle.rewritten and [bundle.entry(i) for i in range(len(bundle))] == [first]
    assert len(read(orjson.dumps([{"resource": {"id": "1"}}]))) == 1
    assert rewrite_bundle(b"[]", "test") == orjson_layout([]) + b"\n"


def test_an_empty_bundle_writes_an_empty_list() -> None:
    bundle = read(orjson_layout([]))
    assert len(bundle) == 0
    assert written(bundle) == b'{\n  "%s": []\n}\n' % OUTPUT_KEY.encode()


def test_a_child_indexes_the_same_bundle_as_the_parent(tmp_path: Path) -> None:
    entries = [
        {"resource": {"id": f"p{i}", "identifier": [{"system": NIK, "value": f"{i:016d}"}]}}
        for i in range(50)
    ]
    entries[3]["resource"]["identifier"].append({"system": NIK, "value": "3.17104E+15"})
    path = tmp_path / "bundle.json"
    path.write_bytes(orjson_layout(entries))
    results = []
    for background in (False, True):
        with reading(path, "test", background=background) as read_it:
            bundle = read_it()
            results.append((written(bundle), bundle.index))
    assert results[0] == results[1]
    index = results[0][1]
    assert (index.niks[7], index.holders[7]) == (7, 7)
    assert len(index.niks) == 50, "a value that is not 16 digits can match no row: not kept"


def test_the_index_pass_and_the_output_pass_hold_blocks_not_the_file(tmp_path: Path) -> None:
    entries = [
        {
            "resource": {
                "id": f"p{i}",
                "identifier": [{"system": NIK, "value": f"{i:016d}"}],
                "text": "x" * 2000,
            }
        }
        for i in range(10_000)
    ]
    path = tmp_path / "bundle.json"
    path.write_bytes(orjson_layout(entries))  # ~21 MB
    with blocks_of(1 << 20):
        tracemalloc.start()
        try:
            with reading(path, "test", background=False) as read_it:
                bundle = read_it()
                bundle.write(_Discard(), range(0, 10_000, 2), lambda _i, text: bytes(text))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    # A few blocks, the writer's queue (<= 9 MB) and the index: not the 21 MB file.
    assert peak < path.stat().st_size / 2


def test_a_forked_child_computes_in_another_process_and_its_failure_is_a_none() -> None:
    with Forked(os.getpid) as child:
        assert child.result() not in (None, os.getpid())
    with Forked(lambda: 1 // 0) as failing:
        assert failing.result() is None


def test_a_child_whose_result_is_not_needed_is_stopped() -> None:
    started = time.monotonic()
    with Forked(lambda: time.sleep(60)):
        pass
    assert time.monotonic() - started < 10


class _Discard(io.RawIOBase):
    def write(self, data: Any) -> int:
        return len(data)


class _FullDisk(io.BytesIO):
    def write(self, data: Any) -> int:
        raise OSError(28, "No space left on device")


def test_a_failed_write_is_raised_not_lost() -> None:
    entries = [{"resource": {"text": " " * 1000}}] * 5000  # several batches for the writer thread
    with pytest.raises(OSError, match="No space left"):
        read(orjson_layout(entries)).write(_FullDisk(), [], lambda _i, text: text)
