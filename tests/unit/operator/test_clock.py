import datetime

from mnist_operator.clock import utc_now


def test_now_reads_as_a_kubernetes_timestamp() -> None:
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    stamp = utc_now()
    after = datetime.datetime.now(datetime.UTC)
    assert len(stamp) == len("2026-11-23T10:00:00Z") and stamp.endswith("Z")
    assert before <= datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")) <= after
