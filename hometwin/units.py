"""Units: the one place a conversion factor is written.

Inside the twin every quantity is SI — energy in joules, power in watts, time in seconds
(DESIGN.md, "Units"); kWh and the like appear only at the edges (configs, prices, reports).
"""

#: joules in a kilowatt-hour (1000 W × 3600 s)
J_PER_KWH = 3.6e6
