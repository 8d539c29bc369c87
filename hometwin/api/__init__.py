"""``hometwin serve``: the HTTP API (FastAPI) the Angular UI (``ui/``) is built on (docs/api.md).

- :mod:`hometwin.api.app` — the application: routes, the login token, body limit, error answers;
- :mod:`hometwin.api.homes` — documents as JSON: kinds and schemas, examples, validation errors
  with their field paths, YAML export and import;
- :mod:`hometwin.api.runs` — the runs kept: in-process ones in a worker thread, result folders;
- :mod:`hometwin.api.live` and :mod:`hometwin.api.live_routes` — live twins through the launcher
  of ``hometwin up``, watched as ``viewer`` and driven as ``controller``; SSE to the browser;
- :mod:`hometwin.api.views` — KPIs, flows, daily and monthly tables, comparisons of a Result;
- :mod:`hometwin.api.kube` — ``--kubernetes``: apply creates or updates the ``Home`` resource;
- :mod:`hometwin.api.cli` — the ``serve`` command.
"""
