"""One cog per user-facing feature; each module ends in `async def setup(bot)`."""
