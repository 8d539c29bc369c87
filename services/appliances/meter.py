"""What every plain load keeps: the energy it was served and its power in the last step."""

from __future__ import annotations

import numpy as np

from hometwin.element import Element, Role, Window


class MeteredLoad(Element):
    """Base of loads whose state is just a meter: ``energy_j`` (total served) and ``power_w``."""

    role = Role.load

    def init_meter(self) -> None:
        """Start the meter at zero (kept as it is after a restore)."""
        self.state.setdefault("energy_j", 0.0)
        self.state.setdefault("power_w", 0.0)

    def settle(self, w: Window, k: int, served: np.ndarray) -> None:
        got = -np.asarray(served[: k + 1], dtype=float)
        self.state["energy_j"] += float(got.sum())
        self.state["power_w"] = float(got[-1] / w.dt_s)

    def telemetry(self) -> dict[str, float]:
        return {"power_w": self.state["power_w"], "energy_j": self.state["energy_j"]}
