"""A PV array: transposition, cell temperature and PVWatts DC."""
