"""How a phone cell becomes the number written to the registry, or why it is rejected."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.phones import InvalidPhone, PhoneFormat, holds, normalize_phone


@pytest.mark.parametrize(
    ("cell", "national"),
    [
        ("081234567890", "081234567890"),
        ("6285678901234", "085678901234"),  # 62 without +
        ("+6285678901234", "085678901234"),
        ("0062 812 3456 7890", "081234567890"),  # phonenumbers alone misreads 0062…
        ("85678901234", "085678901234"),  # the sheet dropped the leading zero
        ("0834-5678-9012", "083456789012"),
        ("(0812) 3456.7890", "081234567890"),
        ("0812/3456/7890", "081234567890"),
        ("0812\u00a03456\u00a07890", "081234567890"),  # non-breaking spaces
        ("+62 (0)812-3456-7890", "081234567890"),  # trunk zero written after the country code
        ("0812345678", "0812345678"),  # 9-digit NSN, the shortest accepted
        ("0812345678901", "0812345678901"),  # 12-digit NSN, the longest accepted
        ("\uff10\uff18\uff11\uff12\uff0d3456\uff0d7890", "081234567890"),  # full-width (IME)
        ("\uff0b62 812 3456 7890", "081234567890"),  # full-width plus
    ],
)
def test_accepted_spellings(cell: str, national: str) -> None:
    phone = normalize_phone(cell)
    assert phone.national == national
    assert phone.e164 == "+62" + national[1:]


@pytest.mark.parametrize(
    ("cell", "reason"),
    [
        ("", "empty"),
        ("o81234567890", "letters"),  # phonenumbers would silently drop the o
        ("0812345678 ext 12", "letters"),
        ("0812-3456-7890#1", "characters other than digits"),
        ("12345", "not a mobile"),  # phonenumbers calls this "possible"
        ("021-5551234", "not a mobile"),  # Jakarta landline
        ("+1 555 123 4567", "foreign country code"),
        ("0044 20 7946 0958", "foreign international prefix"),
        ("08123456", "digits in 08… form"),  # too short
        ("081234567890123", "digits in 08… form"),  # too long
        ("0800-1-234567", "toll-free"),
        ("0812+34567890", "characters other than digits"),
        # Arabic-Indic digits: \d would take them and write them to the registry as they are.
        (
            "\u0660\u0668\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669\u0660",
            "digits other than 0-9",
        ),
    ],
)
def test_rejected_cells_say_why_without_repeating_the_number(cell: str, reason: str) -> None:
    with pytest.raises(InvalidPhone) as exc:
        normalize_phone(cell)
    assert reason in str(exc.value)
    digits = "".join(ch for ch in cell if ch.isdigit())
    if len(digits) >= 6:
        assert digits not in str(exc.value)


def test_unassigned_range_is_accepted_but_flagged() -> None:
    # The reference output applies 0845-6789-0123 although no operator holds 0845.
    phone = normalize_phone("0845-6789-0123")
    assert phone.national == "084567890123"
    assert phone.assigned is False
    assert normalize_phone("081234567890").assigned is True


def test_e164_format_is_chosen_per_call() -> None:
    phone = normalize_phone("0812-3456-7890")
    assert phone.formatted(PhoneFormat.E164) == "+6281234567890"
    assert phone.formatted(PhoneFormat.NATIONAL) == "081234567890"


def test_a_cell_holds_a_number_in_any_accepted_spelling() -> None:
    phone = normalize_phone("081234567890")
    for cell in ("081234567890", "+6281234567890", "0812 3456 7890", "6281234567890"):
        assert holds(cell, phone)
    for cell in ("081234567891", "garbage", ""):
        assert not holds(cell, phone)


# -- properties --------------------------------------------------------------------------------

nsns = st.integers(min_value=8, max_value=8).flatmap(
    lambda first: st.text("0123456789", min_size=8, max_size=11).map(lambda rest: f"{first}{rest}")
)


def _valid_or_none(cell: str) -> str | None:
    try:
        return normalize_phone(cell).e164
    except InvalidPhone:
        return None


@given(nsns)
def test_normalising_twice_equals_once(nsn: str) -> None:
    once = _valid_or_none("0" + nsn)
    if once is not None:
        assert normalize_phone(once).e164 == once
        assert normalize_phone(normalize_phone(once).national).e164 == once


@given(nsns, st.sampled_from(["0{}", "+62{}", "62{}", "0062{}", "{}", "+62 (0){}"]), st.data())
def test_formatting_variants_of_one_number_normalise_equal(
    nsn: str, prefix: str, data: st.DataObject
) -> None:
    separator = data.draw(st.sampled_from(["", " ", "-", ".", "\u00a0"]))
    body = separator.join([nsn[:3], nsn[3:7], nsn[7:]])
    assert _valid_or_none(prefix.format(body)) == _valid_or_none("0" + nsn)


@given(st.text(max_size=20))
def test_any_text_either_normalises_to_an_indonesian_mobile_or_is_rejected(cell: str) -> None:
    result = _valid_or_none(cell)
    if result is not None:
        assert result.startswith("+628")
        assert 12 <= len(result) <= 15


@settings(max_examples=500)
@given(st.sampled_from("123456789888"), st.text("0123456789", min_size=5, max_size=16))
def test_classification_agrees_with_phonenumbers_number_type(first: str, rest: str) -> None:
    import phonenumbers
    from phonenumbers import PhoneNumberType

    from common.phones import classify_nsn

    nsn = first + rest
    number = phonenumbers.parse("+62" + nsn, None)
    expected = phonenumbers.number_type(number)
    kind = classify_nsn(nsn)
    if expected in (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE):
        assert kind == "mobile"
    elif expected == PhoneNumberType.FIXED_LINE:
        assert kind == "fixed"
    elif expected == PhoneNumberType.UNKNOWN:
        assert kind == "unknown"
    else:
        assert kind == "service"
    assert (kind != "unknown") == phonenumbers.is_valid_number(number)
