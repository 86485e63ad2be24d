"""`stylebot`: paint photos locally through the job pipeline, look at jobs, run the bot.

    stylebot stylize PHOTO -s STYLE [-o OUT] [--size PX] [--steps N] [--seed N] ...
    stylebot jobs [--limit N] [--json]      stylebot job ID [--json]
    stylebot cancel ID                      stylebot db upgrade
    stylebot run                            stylebot sync [--guild ID]

`stylize` goes through the same pipeline as the bot (database, worker pool, job
service), so its jobs show up in `stylebot jobs` and survive a crash like any other.
Errors are one line on stderr; a mistake in the request exits with 2, a failed job 1.

`main` holds the parser and hands each command to its module: `stylize`, `jobs` (jobs,
job, cancel) and `admin` (run, sync, db); `common` is what they share.
"""
