"""Analysing history: export events, answer "as of time T" questions from the log.

* ``sources`` – where each context's event store and subject keys are, and
  how one reads them for analysis (pages, personal fields opened with the
  live keys only).
* ``export`` – events to JSON Lines or Parquet, by context, type and time range.
* ``history`` – time travel: a staff member's rights at T, who could see a
  ticket at T, a client's state at T; pure functions over decoded events plus
  thin loaders.
* ``commands`` – the typer commands, registered on ``python -m shared.cli``.
"""
