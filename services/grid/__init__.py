"""Grid connection: tariffs, outages, limits (element: model.Grid)."""
