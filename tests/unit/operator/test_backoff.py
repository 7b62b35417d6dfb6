from mnist_operator.backoff import Backoff


def test_the_steps_in_order_then_the_last_for_good_and_back_to_the_first_after_a_success() -> None:
    backoff = Backoff((1.0, 2.0, 5.0))
    assert [backoff.next_delay() for _ in range(5)] == [1.0, 2.0, 5.0, 5.0, 5.0]
    backoff.reset()
    assert backoff.next_delay() == 1.0
