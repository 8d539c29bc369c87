"""Wire messages: exact float64 round trip through msgpack, validation, counting, the docs table."""

from __future__ import annotations

from pathlib import Path

import msgpack
import numpy as np
import pytest

from hometwin import messages as m

DOC = Path(__file__).resolve().parents[1] / "docs" / "runtime.md"


def roundtrip(msg: m.Message) -> dict:
    return msgpack.unpackb(msgpack.packb(msg.wire(), use_bin_type=True), raw=False)


def test_arrays_exact_to_the_bit() -> None:
    x = np.array([-0.0, 1e-300, np.pi, -123456.789e10, 5e-324])
    back = m.decode(m.EnergyRequest, roundtrip(m.EnergyRequest(seq=3, element="oven", role="load", n=5,
                                                                joules=-np.abs(x))), m.REQUEST, m.Rejections())
    assert back is not None and back.joules.tobytes() == (-np.abs(x)).tobytes()


def test_json_lists_accepted() -> None:
    r = m.decode(m.Signals, {"seq": 0, "element": "sun", "n": 2, "arrays": {"ghi": [1, 2.5]}}, m.SIGNALS, m.Rejections())
    assert r is not None and r.arrays["ghi"].tolist() == [1.0, 2.5]


@pytest.mark.parametrize("model,payload,reason", [
    (m.EnergyRequest, {"seq": 0, "element": "oven", "role": "load", "n": 1, "joules": [5.0]}, "sign"),
    (m.EnergyRequest, {"seq": 0, "element": "roof", "role": "source", "n": 1, "joules": [-5.0]}, "sign"),
    (m.EnergyRequest, {"seq": 0, "element": "oven", "role": "load", "n": 2, "joules": [-5.0]}, "length"),
    (m.Signals, {"seq": 0, "element": "sun", "n": 1, "arrays": {"ghi": [float("nan")]}}, "finite"),
    (m.Signals, {"seq": 0, "element": "sun", "n": 1, "arrays": {"ghi": b"\x00" * 7}}, "bytes"),
    (m.Tick, {"seq": -1, "i0": 0, "n": 1, "dt_s": 60, "t0": 0}, "seq"),
    (m.Tick, {"seq": 0, "i0": 0, "n": 1, "dt_s": 60, "t0": 0, "extra": 1}, "extra"),
    (m.DispatchRequest, {"seq": 0, "dt_s": 60, "n": 1, "charge_j": [-1.0], "discharge_j": [0.0]}, "sign"),
    (m.DispatchRequest, {"seq": 0, "dt_s": 60, "n": 1, "charge_j": [0.0], "discharge_j": [0.0], "soc_floor": [1.5]}, "range"),
    (m.Settle, {"seq": 0, "i0": 0, "n": 2, "k": 2, "served": {}, "participants": []}, "k"),
    (m.Flows, {"seq": 0, "i0": 0, "n": 1, "k": 0, "dt_s": 60, "flows": {}, "served": {}, "roles": {}}, "keys"),
    (m.Describe, {"element": "Bad Name", "kind": "oven", "role": "load"}, "name"),
])
def test_bad_messages_rejected_and_counted(model, payload, reason) -> None:  # type: ignore[no-untyped-def]
    seen: list[tuple[str, str]] = []
    rej = m.Rejections(lambda uri, why: seen.append((uri, why)))
    assert m.decode(model, payload, "hometwin.x", rej) is None
    assert rej.total == 1 and seen == [("hometwin.x", "invalid")]


def test_non_map_payload_is_malformed() -> None:
    rej = m.Rejections()
    assert m.decode(m.Tick, [1, 2], m.TICK, rej) is None
    assert rej.counts[(m.TICK, "malformed")] == 1


def test_docs_topics_table_is_current() -> None:
    """docs/runtime.md carries the generated table verbatim (regenerate: python -m hometwin.messages)."""
    assert m.topics_table() in DOC.read_text()
