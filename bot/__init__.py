"""stylebot: a Discord bot and a local CLI that paint photos in the style of artworks.

`bot.jobs` holds durable jobs, fair scheduling and recovery (no Discord, no torch);
`bot.discord` is the Discord front end; `bot.cli` is the `stylebot` command.
"""
