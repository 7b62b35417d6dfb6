from mnist_api.exit_codes import EXIT_CODES, ExitCode, codes_that_fail_at_once, describe_exit_code


def test_codes_a_retry_cannot_fix_fail_the_job_at_once() -> None:
    assert codes_that_fail_at_once() == [65, 66, 70, 78, 79]
    assert ExitCode.METRICS_UNAVAILABLE not in codes_that_fail_at_once()


def test_every_code_is_described_and_codes_are_distinct() -> None:
    assert set(EXIT_CODES) == set(ExitCode)
    assert len({int(c) for c in ExitCode}) == len(ExitCode)
    assert all(info.reason.isalnum() for info in EXIT_CODES.values())


def test_unknown_codes_get_an_honest_description() -> None:
    assert describe_exit_code(137).reason == "Killed"
    assert "signal 9" in describe_exit_code(137).description
    assert describe_exit_code(42).reason == "TrainerError"
    assert describe_exit_code(66).reason == "DataUnavailable"
