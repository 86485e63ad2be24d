"""A supervised pool of warm worker processes that run painting jobs.

Nothing here imports torch in the calling process: workers are spawned and load VGG19
themselves, so the bot process never initialises CUDA.
"""
