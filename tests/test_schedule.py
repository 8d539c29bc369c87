"""Daily windows (inverter slots, grid outages, appliance timers): the whole day is one, an
empty one is refused with a hint that works."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from hometwin.schedule import DailyWindow, window_mask


def test_the_whole_day_is_a_window_as_the_refusal_says() -> None:
    with pytest.raises(ValidationError, match="use 00:00-24:00 for the whole day"):
        DailyWindow(start="06:00", end="06:00")
    with pytest.raises(ValidationError, match="same time"):
        DailyWindow(start="00:00", end="00:00")
    whole = DailyWindow(start="00:00", end="24:00")  # what the message advises
    day = pd.date_range("2025-03-30", periods=1440, freq="min", tz="Europe/Oslo")  # a DST day too
    assert window_mask(day, whole).all()
    evening = window_mask(day, DailyWindow(start="18:00", end="24:00"))
    assert evening.sum() == np.sum(day.hour >= 18)
