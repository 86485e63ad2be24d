"""A supervised pool of warm worker processes that run painting jobs.

Nothing here imports torch in the calling process: workers start from a forkserver (or
are spawned where there is none) and load VGG19 themselves, so the bot process never
initialises CUDA. `supervisor` runs the pool, `worker` is a worker's life, `spec` what a
worker starts with, `messages` what crosses the pipes, `progress` the progress events,
`reader` the thread that reads every worker's pipe.
"""
