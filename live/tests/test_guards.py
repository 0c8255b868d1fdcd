"""The socket's guards, without a socket."""

import time

from live import guards


def test_a_frame_over_the_limit_is_refused_as_too_large():
    assert guards.frame_size(100, 100) is None
    refusal = guards.frame_size(101, 100)
    assert refusal.frame_code == "too_large" and "100 bytes" in refusal.message


def test_admission_stops_at_the_limit_and_zero_means_none():
    assert guards.admission(9, 10) and not guards.admission(10, 10)
    assert guards.admission(10_000, 0)


def test_a_flood_is_refused_said_once_per_hundred_then_closed():
    flood = guards.FloodGuard(rate=0.0, burst=3)
    assert [flood.admit()[0] for _ in range(3)] == [True, True, True]
    answers = [flood.admit() for _ in range(guards.FLOOD_LIMIT + 1)]
    said = [refusal for admitted, refusal, _ in answers if refusal is not None]
    assert not any(admitted for admitted, _, _ in answers)
    # Refusals pile up faster than they are forgiven (at FLOOD_FORGIVE a second).
    assert 1 <= len(said) <= guards.FLOOD_LIMIT // 100 + 1
    assert said[0].frame_code == "rate_limited"
    assert answers[-1][2] == guards.CLOSE_FLOOD


def test_refusals_are_forgiven_over_time():
    flood = guards.FloodGuard(rate=0.0, burst=0)
    flood.admit()
    flood.refused_at -= 10  # ten seconds later: all forgiven
    flood.admit()
    assert flood.refused == 1


def test_a_token_bucket_refills_at_its_rate():
    bucket = guards.TokenBucket(rate=10, burst=2)
    assert bucket.take(2) and not bucket.take()
    bucket.stamp -= 0.2
    assert bucket.take(2) and not bucket.take()


def test_liveness_closes_the_silent_and_the_slow():
    now = time.monotonic()
    liveness = guards.Liveness(last_heard=now)
    assert liveness.verdict(now + 5, idle_timeout=10, slow_close=3) is None
    assert liveness.verdict(now + 11, idle_timeout=10, slow_close=3) == guards.CLOSE_IDLE
    liveness.paused_at = now
    assert liveness.verdict(now + 4, idle_timeout=10, slow_close=3) == guards.CLOSE_SLOW
    liveness.paused_at = None
    liveness.heard()
    assert liveness.verdict(time.monotonic() + 5, idle_timeout=10, slow_close=3) is None
