"""The core codec (``hometwin.codec``): state files and strategies' plans share one encoding, it
reads the files written before it moved out of the runtime, and a plan survives it exactly."""

from __future__ import annotations

import base64

import numpy as np

from hometwin import codec
from hometwin.services.inverter.strategies.base import Plan


def test_a_tree_in_the_state_file_format_of_before_reads_back() -> None:
    # as hometwin.state/1 files hold it: an ndarray tagged "$t" with dtype, shape and base64 bytes
    raw = base64.b64encode(np.array([0.1, -2.5, 1e-300], dtype="<f8").tobytes()).decode()
    text = ('{"temps":{"$t":"ndarray","dtype":"<f8","shape":[3],"data":"%s"},'
            '"pair":{"$t":"tuple","items":[1,2.5]},"on":true,"n":{"$t":"scalar","dtype":"<i8","data":"%s"}}'
            % (raw, base64.b64encode(np.int64(7).tobytes()).decode()))
    tree = codec.decode(codec.loads(text))
    assert tree["temps"].dtype == np.float64 and tree["temps"].tolist() == [0.1, -2.5, 1e-300]
    assert tree["pair"] == (1, 2.5) and tree["on"] is True and tree["n"] == np.int64(7)
    assert codec.dumps(codec.encode(tree)) == text  # and is written the same way


def test_a_plan_goes_through_the_codec_bit_for_bit() -> None:
    plan = Plan(t0_s=1_750_000_000, dt_s=900, n=4, charge_w=np.array([0.0, 1e3 / 3, np.nan, 2.0]),
                soc_floor=np.array([0.1, 0.1, 0.2, 0.2]), setpoints={"house": np.array([20.5, 21.0, 21.0, 19.0])},
                on={"geyser": np.array([True, False, False, True])}, starts={"dishwasher": {1_750_000_900: 1_750_002_700}},
                cost=3.25, info={"rule": "lp", "heat_w": {"house": np.array([1.0, 2.0, 3.0, 4.0])},
                                 "solver": object()})
    state = plan.to_state()
    assert "solver" not in state["info"] and codec.is_plain(state)  # solver objects are left out
    back = Plan.from_state(codec.decode(codec.loads(codec.dumps(codec.encode(state)))))
    assert back.charge_w.tobytes() == plan.charge_w.tobytes()  # NaN and 1e3/3 bit for bit
    assert back.setpoints["house"].tobytes() == plan.setpoints["house"].tobytes()
    assert back.on["geyser"].tolist() == [True, False, False, True]
    assert back.starts == {"dishwasher": {1_750_000_900: 1_750_002_700}} and back.cost == 3.25
    assert back.info["heat_w"]["house"].tolist() == [1.0, 2.0, 3.0, 4.0] and back.info["rule"] == "lp"
    copied = codec.copy_tree(state)
    copied["info"]["heat_w"]["house"][0] = -1.0  # a copy shares nothing mutable
    assert state["info"]["heat_w"]["house"][0] == 1.0
