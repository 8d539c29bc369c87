"""Space heating: building thermal model (building.py), thermostat control (control.py),
panel heaters (heater.py, kind ``space_heater``) and heat pumps (heat_pump.py, kind ``heat_pump``)."""
