"""Bundle files as entry texts: cut where the layout allows, rewritten where it does not.

Whichever way a file is read, the entries are the same and the output is written in one layout.
"""

import io
import json
import os
import time
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common._forked import Forked
from common.bundle import (
    OUTPUT_KEY,
    MalformedEntry,
    cut_entries,
    parse_entry,
    reading,
    rewrite_entries,
    write_bundle,
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


def orjson_layout(entries: list[Any], key: str = "patients_before_phone_update") -> bytes:
    return orjson.dumps({key: entries}, option=orjson.OPT_INDENT_2)


def written(texts: list[Any]) -> bytes:
    out = io.BytesIO()
    write_bundle(texts, out)
    return out.getvalue()


@settings(max_examples=200)
@given(_entries, st.sampled_from(["orjson", "json-ascii", "json-utf8", "compact", "indent-4"]))
def test_cut_or_rewritten_a_file_gives_back_its_entries(entries: list[Any], layout: str) -> None:
    doc = {"patients_before_phone_update": entries}
    raw = {
        "orjson": lambda: orjson_layout(entries),
        "json-ascii": lambda: json.dumps(doc, indent=2).encode(),
        "json-utf8": lambda: json.dumps(doc, indent=2, ensure_ascii=False).encode(),
        "compact": lambda: orjson.dumps(doc),
        "indent-4": lambda: json.dumps(doc, indent=4).encode(),
    }[layout]()
    cut = cut_entries(raw)
    if layout in ("orjson", "json-ascii", "json-utf8") and entries:
        assert cut is not None, "the two-space layouts are cut, not parsed whole"
    for texts in (cut, rewrite_entries(raw, "test")):
        if texts is None:
            continue
        assert [parse_entry(t) for t in texts] == entries
        assert orjson.loads(written(texts)) == {OUTPUT_KEY: entries}


@given(_entries)
def test_output_is_byte_for_byte_what_orjson_writes(entries: list[Any]) -> None:
    raw = orjson_layout(entries, OUTPUT_KEY)
    expected = orjson.dumps({OUTPUT_KEY: entries}, option=orjson.OPT_INDENT_2) + b"\n"
    assert written(rewrite_entries(raw, "test")) == expected
    cut = cut_entries(raw)
    if cut is not None:
        assert written(cut) == expected  # so a transform's output can be its next input


def test_unchanged_entries_keep_their_exact_bytes() -> None:
    raw = json.dumps(
        {"patients_before_phone_update": [{"resource": {"name": "Séna", "n": 1.50}}]}, indent=2
    ).encode()
    texts = cut_entries(raw)
    assert texts is not None
    assert b'"S\\u00e9na"' in written(texts) and b'"n": 1.5' in written(texts)


def test_a_file_that_only_looks_cut_able_is_caught_by_parsing_the_pieces() -> None:
    # A valid bundle whose second-level lines happen to sit at the entries' indentation.
    raw = (
        b'{\n  "patients_before_phone_update": [\n    {\n      "resource": {"id": "a", "c": [\n'
        b'    {"x": 1\n    },\n    {"y": 2}\n      ]}\n    }\n  ]\n}'
    )
    texts = cut_entries(raw)
    assert texts is not None and len(texts) == 2  # the cut is wrong here…
    with pytest.raises(MalformedEntry):
        [parse_entry(t) for t in texts]  # …and parsing every piece says so
    out = io.BytesIO()
    with reading(raw, "test") as bundle:
        transform([], bundle, out, last_updated=NOW)
    assert orjson.loads(out.getvalue())[OUTPUT_KEY] == [
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
        raw = orjson.dumps(doc, option=orjson.OPT_INDENT_2)
        assert [parse_entry(t) for t in rewrite_entries(raw, "test")] == [first]
    bare = orjson.dumps([{"resource": {"id": "1"}}])
    assert len(rewrite_entries(bare, "test")) == 1


def test_an_empty_bundle_writes_an_empty_list() -> None:
    raw = orjson_layout([])
    assert cut_entries(raw) is None
    assert written(rewrite_entries(raw, "test")) == b'{\n  "%s": []\n}\n' % OUTPUT_KEY.encode()


def test_a_child_indexes_the_same_bundle_as_the_parent() -> None:
    entries = [
        {"resource": {"id": f"p{i}", "identifier": [{"system": NIK, "value": f"{i:016d}"}]}}
        for i in range(50)
    ]
    raw = orjson_layout(entries)
    results = []
    for background in (False, True):
        with reading(raw, "test", background=background) as read:
            bundle = read()
        results.append((bytes(written(bundle.texts)), bundle.keys))
    assert results[0] == results[1]
    assert results[0][1][7] == ("p7", ("0000000000000007",))


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


class _FullDisk(io.BytesIO):
    def write(self, data: Any) -> int:
        raise OSError(28, "No space left on device")


def test_a_failed_write_is_raised_not_lost() -> None:
    texts = [b"{" + b" " * 1000 + b"}"] * 5000  # several batches for the writer thread
    with pytest.raises(OSError, match="No space left"):
        write_bundle(texts, _FullDisk())
