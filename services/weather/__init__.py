"""Weather: clouds, irradiance, air temperature and wind (stochastic or from files)."""
