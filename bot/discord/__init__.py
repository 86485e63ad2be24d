"""The Discord front end: a thin layer of cogs over the job service.

Validate, defer, call the service, reply. The composition root (`bot.app`) builds the
pieces and hands them over: `client.StyleBot` (the service, settings and attachment
fetcher), then `delivery.Delivery` (the service and the client; shows progress and
results), then `jobflow.JobFlow` (the service, storage and delivery; starts jobs and
answers job buttons), both given to the client for its cogs and buttons. Imports run
one way: `cogs` -> `jobflow` -> `delivery` -> `views` -> `errors`, with `embeds`,
`pictures`, `validation` and `callers` below them; a job button reaches the flow
through `interaction.client`, not by import.
"""
