"""Studies that run whole engines over a home — ``compare-strategies`` and its helpers.

They live outside the device folders (``services/``): a device model never runs an engine
(issue 22, part 3); a study is a user of the engine, like the CLI.
"""
