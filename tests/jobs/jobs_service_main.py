"""A job service in its own process, for the crash tests.

    python jobs_service_main.py DATA_DIR [DATABASE_URL]

Runs every queued job with one quick worker and exits 0 once none is queued or running.
The test kills it with SIGKILL mid-job and starts it again over the same database.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from bot.jobs.db import create_engine_and_sessionmaker, upgrade_database
from bot.jobs.executor import LocalPoolExecutor
from bot.jobs.service import JobService
from bot.jobs.storage import BlobStorage
from bot.logging_setup import setup_logging
from bot.settings import Settings


async def serve(data_dir: Path, database_url: str = "") -> int:
    import jobs_workers

    settings = Settings.from_env({}, data_dir=data_dir, database_url=database_url,
                                 device="cpu", workers=1)
    await upgrade_database(settings.database_url)
    engine, sessionmaker = create_engine_and_sessionmaker(settings.database_url)
    executor = LocalPoolExecutor.from_settings(settings, preview_interval_s=0.2,
                                               worker_target=jobs_workers.quick_worker)
    # A long lease: the restarted service must find the job by its dead runner's pid.
    service = JobService(sessionmaker=sessionmaker, storage=BlobStorage(settings.blobs_dir),
                         executor=executor, settings=settings, presets_dir=None,
                         lease_s=600, poll_interval_s=0.1)
    try:
        await service.start()
        while active := await service.active_jobs():
            for view in active:
                await service.wait(view.id)
        return 0
    finally:
        await service.stop(grace_s=2)
        await engine.dispose()


if __name__ == "__main__":
    setup_logging("INFO")
    sys.exit(asyncio.run(serve(Path(sys.argv[1]), *sys.argv[2:3])))
