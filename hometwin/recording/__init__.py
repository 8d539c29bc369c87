"""The recorder: every settled step of a run, by simulated time, in a database (docs/recording.md).

:mod:`.schema` holds the tables, :mod:`.store` writes them (SQLite or PostgreSQL), :mod:`.run`
records an in-process run (``hometwin run --db``) and :mod:`.service` is ``hometwin record``,
the recorder of a live home.
"""
