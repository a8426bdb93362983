from __future__ import annotations

import pytest

from edge.selector import ProtocolSelector, connectivity_score, normalise, recommend


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def perfect() -> dict[str, float]:
    return {"latency_ms": 20, "bandwidth_kbps": 5000, "packet_loss": 0.0, "uptime_percent": 100}


def test_perfect_link_scores_one_and_recommends_websocket() -> None:
    score, factors = connectivity_score(**perfect())
    assert score == 1.0 and set(factors) == {"latency", "bandwidth", "packet_loss", "uptime"}
    assert recommend(score) == "websocket"


@pytest.mark.parametrize("score,expected", [
    (1.0, "websocket"), (0.8, "websocket"), (0.7999, "rest"), (0.5, "rest"),
    (0.4999, "mqtt"), (0.0, "mqtt"),
])
def test_recommendation_boundaries(score: float, expected: str) -> None:
    assert recommend(score) == expected


@pytest.mark.parametrize("factor,bad", [
    ("latency_ms", 2000), ("bandwidth_kbps", 0), ("packet_loss", 0.5), ("uptime_percent", 0),
])
def test_each_factor_lowers_the_score_by_its_weight(factor: str, bad: float) -> None:
    weights = {"latency_ms": 0.3, "bandwidth_kbps": 0.2, "packet_loss": 0.3,
               "uptime_percent": 0.2}
    score, _ = connectivity_score(**{**perfect(), factor: bad})
    assert score == pytest.approx(1 - weights[factor])


def test_factor_normalisation_edges() -> None:
    assert normalise(latency_ms=50)["latency"] == 1.0
    assert normalise(latency_ms=525)["latency"] == pytest.approx(0.5)
    assert normalise(latency_ms=1000)["latency"] == 0.0
    assert normalise(bandwidth_kbps=1000)["bandwidth"] == pytest.approx(0.5)
    assert normalise(bandwidth_kbps=9000)["bandwidth"] == 1.0
    assert normalise(packet_loss=0.05)["packet_loss"] == pytest.approx(0.5)
    assert normalise(packet_loss=0.2)["packet_loss"] == 0.0
    assert normalise(uptime_percent=95)["uptime"] == pytest.approx(0.95)


def test_unknown_factors_are_left_out_not_counted_as_zero() -> None:
    assert connectivity_score() == (None, {})
    score, factors = connectivity_score(latency_ms=20)
    assert score == 1.0 and list(factors) == ["latency"]


def test_mid_latency_gives_rest_and_heavy_loss_gives_mqtt() -> None:
    assert recommend(connectivity_score(**{**perfect(), "latency_ms": 900})[0]) == "rest"
    lossy = {**perfect(), "packet_loss": 0.2, "latency_ms": 800}
    assert recommend(connectivity_score(**lossy)[0]) == "mqtt"


def test_failures_step_down_the_ladder_with_reasons() -> None:
    sel = ProtocolSelector(clock=Clock())
    assert sel.current == "websocket"
    assert sel.on_failure("connection_lost").to == "rest"
    assert sel.on_failure("timeout").to == "mqtt"
    sw = sel.on_failure("connect_failed")
    assert (sw.from_, sw.to) == ("mqtt", "offline")
    assert [s.reason for s in sel.history] == [
        "websocket connection_lost", "rest timeout", "mqtt connect_failed"]
    assert [s["to"] for s in sel.pop_unreported()] == ["rest", "mqtt", "offline"]
    assert sel.pop_unreported() == []


def test_rest_server_error_goes_to_mqtt() -> None:
    sel = ProtocolSelector(clock=Clock())
    sel.on_failure("connection_lost")
    assert sel.on_failure("server_error").to == "mqtt"


def test_high_latency_on_websocket_goes_to_rest() -> None:
    sel = ProtocolSelector(high_latency_ms=1000, clock=Clock())
    assert sel.record_send(True, 200) is None
    sw = None
    for _ in range(20):
        sw = sw or sel.record_send(True, 3000)
    assert sw is not None and sw.to == "rest" and "high_latency" in sw.reason


def test_offline_retries_mqtt_after_a_growing_wait() -> None:
    clock = Clock()
    sel = ProtocolSelector(offline_retry_s=5, clock=clock)
    sel.current = "mqtt"
    sel.on_failure("connect_failed")
    clock.t += 4.9
    assert sel.evaluate() is None
    clock.t += 0.2
    assert sel.evaluate().to == "mqtt"
    sel.on_failure("connect_failed")  # second failure: wait doubles
    clock.t += 6
    assert sel.evaluate() is None
    clock.t += 5
    assert sel.evaluate().to == "mqtt"


def test_offline_retry_wait_stops_growing_at_its_cap() -> None:
    clock = Clock()
    sel = ProtocolSelector(offline_retry_s=1, offline_retry_max_s=3, clock=clock)
    sel.current = "mqtt"
    for _ in range(6):  # waits 1, 2, then 3 (not 4, 8, 16): the retry comes within the cap every time
        sel.on_failure("connect_failed")
        clock.t += 2.9
        if sel.evaluate() is None:
            clock.t += 0.2
            assert sel.evaluate().to == "mqtt"
    sel.on_failure("connect_failed")
    clock.t += 2.9
    assert sel.evaluate() is None  # still waits the cap, never less


def good_local(sel: ProtocolSelector) -> None:
    for _ in range(30):
        sel.stats.record_send(True, 30)
        sel.stats.record_connected(True)


def test_goes_back_up_only_when_server_and_local_both_allow_and_after_dwell() -> None:
    clock = Clock()
    sel = ProtocolSelector(up_after=3, min_dwell_s=30, clock=clock)
    sel.on_failure("connection_lost")
    good_local(sel)
    for _ in range(5):  # local fine, but no word from the server: stay
        clock.t += 10
        assert sel.evaluate() is None
    sel.on_recommendation("rest", 0.6)
    for _ in range(5):  # the server says rest: stay
        clock.t += 10
        assert sel.evaluate() is None
    sel.on_recommendation("websocket", 0.9)
    clock.t += 10
    assert sel.evaluate() is None and sel.evaluate() is None
    sw = sel.evaluate()
    assert sw is not None and sw.to == "websocket" and sw.reason.startswith("recovered")


def test_bad_local_measurements_veto_going_up() -> None:
    clock = Clock()
    sel = ProtocolSelector(up_after=1, min_dwell_s=0, clock=clock)
    sel.on_failure("connection_lost")
    sel.on_recommendation("websocket", 0.95)
    for _ in range(30):
        sel.stats.record_send(True, 900)  # local latency only allows rest
    for _ in range(5):
        clock.t += 10
        assert sel.evaluate() is None
    assert sel.current == "rest"


def test_minimum_dwell_time_before_going_up() -> None:
    clock = Clock()
    sel = ProtocolSelector(up_after=1, min_dwell_s=30, clock=clock)
    sel.on_failure("connection_lost")
    good_local(sel)
    sel.on_recommendation("websocket")
    clock.t += 29
    assert sel.evaluate() is None
    clock.t += 2
    assert sel.evaluate().to == "websocket"


def test_oscillating_signal_does_not_flap() -> None:
    clock = Clock()
    sel = ProtocolSelector(up_after=3, down_after=2, min_dwell_s=30, clock=clock)
    good_local(sel)
    switches = 0
    for i in range(200):
        clock.t += 5
        sel.on_recommendation("websocket" if i % 2 else "rest")
        switches += sel.evaluate(connected=True) is not None
    assert switches == 0 and sel.current == "websocket"
    sel.on_failure("connection_lost")  # now on rest, with the same oscillation
    for i in range(200):
        clock.t += 5
        sel.on_recommendation("websocket" if i % 2 else "rest")
        switches += sel.evaluate(connected=True) is not None
    assert switches == 0 and sel.current == "rest"


def test_sustained_degradation_steps_down_after_down_after_evaluations() -> None:
    clock = Clock()
    sel = ProtocolSelector(down_after=2, clock=clock)
    good_local(sel)
    sel.on_recommendation("mqtt", 0.3)
    assert sel.evaluate() is None
    sw = sel.evaluate()
    assert sw.to == "mqtt" and sw.reason.startswith("degraded")


def test_fixed_protocol_goes_offline_and_retries_the_same_transport() -> None:
    clock = Clock()
    sel = ProtocolSelector(fixed="rest", offline_retry_s=1, clock=clock)
    assert sel.current == "rest"
    assert sel.on_failure("timeout").to == "offline"
    clock.t += 1.5
    assert sel.evaluate().to == "rest"
    sel.on_recommendation("websocket")
    good_local(sel)
    for _ in range(10):
        clock.t += 60
        assert sel.evaluate() is None


def test_forced_protocol_is_held_against_evaluation_but_not_failures() -> None:
    clock = Clock()
    sel = ProtocolSelector(up_after=1, min_dwell_s=0, clock=clock)
    good_local(sel)
    sel.on_recommendation("websocket")
    sw = sel.force("mqtt", reason="command 42", hold_s=100)
    assert sw.to == "mqtt" and sw.reason == "command 42"
    clock.t += 50
    assert sel.evaluate() is None
    clock.t += 51
    assert sel.evaluate().to == "websocket"
    assert sel.force("socketio").to == "socketio" and sel.levels[0] == "socketio"
    assert sel.on_failure("connection_lost").to == "rest"
    with pytest.raises(ValueError):
        sel.force("carrier-pigeon")
