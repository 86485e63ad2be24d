"""`stylebot`: paint photos locally through the job pipeline, look at jobs, run the bot.

    stylebot stylize PHOTO -s STYLE [-o OUT] [--size PX] [--steps N] [--seed N] ...
    stylebot jobs [--limit N] [--json]      stylebot job ID [--json] [-o PNG]
    stylebot cancel ID                      stylebot db upgrade
    stylebot run                            stylebot sync [--guild ID]
    stylebot worker [--grace SECONDS]       stylebot db copy --to URL

`stylize` goes through the same pipeline as the bot (database, worker pool, job
service), so its jobs show up in `stylebot jobs` and survive a crash like any other.
`worker` paints the jobs queued in a shared database, for bots and `stylize`s that run
with `STYLEBOT_WORKERS=0`. Errors are one line on stderr; a mistake in the request exits
with 2, a failed job 1.

`main` holds the parser and hands each command to its module: `stylize`, `jobs` (jobs,
job, cancel), `admin` (run, sync, db upgrade), `db` (db copy) and `worker`; `common` is
what they share.
"""
