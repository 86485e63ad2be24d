"""Durable painting jobs: the database, image storage, fair scheduling and recovery.

No Discord and no torch here; workers are reached through the `Executor` seam.
"""
