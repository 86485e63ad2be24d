"""Alembic migrations for the job database.

Applied at start-up and by `stylebot db upgrade` (`bot.jobs.db.upgrade_database`); no
alembic.ini is needed. To write a new migration after changing the models in
`bot/jobs/db.py`, autogenerate it against a database that is at the current head:

    python -c "from alembic import command; from bot.jobs.db import alembic_config; \\
        command.revision(alembic_config('sqlite+aiosqlite:///dev.db'), 'what changed', \\
        autogenerate=True)"

then read it, name it `NNNN_what_changed.py` like the others, and keep
`tests/jobs/test_migrations.py` passing: models and migrations must agree on SQLite and
on PostgreSQL, where the same model can mean another column type (see 0003).
"""
