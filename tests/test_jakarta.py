"""common.jakarta: the one Asia/Jakarta clock (WIB, a fixed UTC+07:00)."""

from datetime import UTC, datetime, timedelta

from common.jakarta import jakarta_now_iso, jakarta_time, jakarta_today


def test_a_unix_time_reads_as_wib_with_its_offset() -> None:
    assert jakarta_time(0) == "1970-01-01 07:00:00+07:00"
    assert jakarta_time(1_758_643_205.9) == "2025-09-23 23:00:05+07:00"  # 16:00:05 UTC


def test_today_and_now_are_seven_hours_ahead_of_utc() -> None:
    before = datetime.now(UTC)
    today, now = jakarta_today(), datetime.fromisoformat(jakarta_now_iso())
    after = datetime.now(UTC)
    assert today in {(before + timedelta(hours=7)).date(), (after + timedelta(hours=7)).date()}
    assert now.utcoffset() == timedelta(hours=7)
    assert before <= now <= after
    assert len(jakarta_now_iso()) == len("2025-09-23T23:45:00.123456+07:00")  # microseconds
