"""Appliances: scheduled loads (scheduled.py) and the base load (base_load.py)."""
