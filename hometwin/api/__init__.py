"""``hometwin serve``: the HTTP API (FastAPI) the Angular UI (``ui/``) is built on.

:mod:`hometwin.api.app` makes the application, :mod:`hometwin.api.homes` turns documents and
their problems into JSON, :mod:`hometwin.api.runs` keeps the runs (in-process ones in a worker
thread, live twins through :class:`hometwin.runtime.launcher.Launcher`), :mod:`hometwin.api.views`
derives KPIs, flows and daily/monthly tables from a :class:`hometwin.results.Result`.
See docs/api.md.
"""
