"""The Discord front end: a thin layer of cogs over the job service.

Validate, defer, call the service, reply. `client.StyleBot` holds the services;
`delivery` shows progress and results; `jobflow` starts jobs; `views` and `embeds`
draw them.
"""
