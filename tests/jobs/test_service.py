"""JobService on a real SQLite file with a fake executor: submit, limits, fairness, ETA."""

from __future__ import annotations

import asyncio
import gc
import io
import math
import struct
import time
import zlib
from collections.abc import Awaitable
from typing import Any

import pytest
from jobs_helpers import FakeExecutor, Recorder, ServiceFactory, TickingClock, png, until
from PIL import Image
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.jobs import db
from bot.jobs.access import Caller, Context, Origin
from bot.jobs.errors import InvalidRequest, JobNotFound, LimitExceeded, UserError
from bot.jobs.events import JobQueued
from bot.jobs.states import JobStatus
from bot.jobs.storage import BlobStorage, sha256_hex
from bot.settings import Settings
from stylizer import images
from stylizer.pool.messages import JobRequest, JobStarted, JobSucceeded, PoolEvent

STYLE = png(99)


async def _count(sm: async_sessionmaker[AsyncSession]) -> int:
    async with sm() as session:
        return await db.count_jobs(session)


async def test_the_operators_default_steps_apply_unless_the_job_sets_its_own(
        make_service: ServiceFactory, settings: Settings) -> None:
    service = make_service(settings_=settings.replace(default_steps=25))
    plain = await service.submit(user_id="u1", user_name="Ada", content=png(1),
                                 style_image=STYLE)
    own = await service.submit(user_id="u2", user_name="Bo", content=png(2), style_image=STYLE,
                               params={"steps": 7})
    assert (plain.params["steps"], plain.total_steps) == (25, 25)
    assert own.params["steps"] == 7


async def test_submit_stores_the_job_and_its_images(
        make_service: ServiceFactory, storage: BlobStorage,
        sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    service = make_service()
    rec = Recorder()
    service.subscribe(rec)
    photo = png(1)
    view = await service.submit(user_id="u1", user_name="Ada", content=photo, style_image=STYLE,
                                params={"steps": 7, "seed": 3}, source="slash",
                                origin=Origin("g", "c", Context.guild, guild_install=True),
                                private=True)
    assert view.status is JobStatus.queued
    assert view.style == "custom"
    assert view.input_hash == sha256_hex(photo)
    assert storage.get(view.input_hash) == photo
    assert view.style_hash == sha256_hex(STYLE)
    assert storage.get(view.style_hash) == STYLE
    assert view.params["steps"] == 7
    assert view.params["seed"] == 3
    assert view.params["size"] == 48  # settings.default_size
    assert (view.total_steps, view.attempts, view.delivered) == (7, 0, False)
    assert (view.guild_id, view.channel_id, view.source, view.private) == ("g", "c", "slash",
                                                                           True)
    assert await service.get(view.id.upper()) == view
    assert await service.read_input(view.id) == photo
    assert await service.read_output(view.id) is None
    await rec.wait_for(lambda: bool(rec.of(JobQueued)))
    queued = rec.of(JobQueued)[0]
    assert (queued.job.id, queued.position) == (view.id, 1)
    assert queued.eta_s == pytest.approx(60.0)
    assert await _count(sessionmaker) == 1


def _tiff() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "TIFF")
    return buf.getvalue()


@pytest.mark.parametrize(("content", "code"), [
    (b"", "corrupt_image"),
    (b"definitely not an image", "corrupt_image"),
    (png(1)[:40], "corrupt_image"),
    (_tiff(), "unsupported_image"),
    (png(1, width=300, height=300), "image_too_large"),  # over max_pixels below
])
async def test_bad_images_are_refused_at_submit(
        make_service: ServiceFactory, settings: Settings, content: bytes, code: str,
        sessionmaker: async_sessionmaker[AsyncSession], storage: BlobStorage) -> None:
    service = make_service(settings_=settings.replace(max_pixels=200 * 200))
    with pytest.raises(InvalidRequest) as info:
        await service.submit(user_id="u", user_name="u", content=content, style_image=STYLE)
    assert info.value.code == code
    assert str(info.value)
    with pytest.raises(InvalidRequest) as info:
        await service.submit(user_id="u", user_name="u", content=png(1), style_image=content)
    assert info.value.code == code
    assert await _count(sessionmaker) == 0
    assert not storage.root.exists()  # nothing stored for a refused request


async def test_a_file_over_the_byte_limit_is_refused(make_service: ServiceFactory,
                                                    settings: Settings) -> None:
    service = make_service(settings_=settings.replace(max_upload_bytes=1000))
    with pytest.raises(InvalidRequest, match="MB") as info:
        await service.submit(user_id="u", user_name="u", content=png(1, 64, 64),
                             style_image=STYLE)
    assert info.value.code == "image_too_large"


@pytest.mark.parametrize(("kwargs", "code", "fragment"), [
    ({"params": {"steps": 0}}, "invalid_params", "steps"),
    ({"params": {"size": 512}}, "invalid_params", "largest size is 256"),
    ({"params": {"optimizer": "sgd"}}, "invalid_params", "optimizer"),
    ({"params": {"bogus": 1}}, "invalid_params", "bogus"),
    ({"style_image": STYLE, "style": "scream"}, "invalid_request", "one style"),
    ({"style_image": None}, "invalid_request", "one style"),
])
async def test_bad_requests_are_refused(make_service: ServiceFactory, kwargs: dict[str, Any],
                                        code: str, fragment: str) -> None:
    service = make_service()
    args = {"user_id": "u", "user_name": "u", "content": png(1), "style_image": STYLE} | kwargs
    with pytest.raises(InvalidRequest, match=fragment) as info:
        await service.submit(**args)
    assert info.value.code == code


async def test_unknown_preset_suggests_names(make_service: ServiceFactory) -> None:
    pytest.importorskip("stylizer.presets")
    service = make_service()
    with pytest.raises(InvalidRequest) as info:
        await service.submit(user_id="u", user_name="u", content=png(1), style="starry nigth")
    assert info.value.code == "unknown_style"


async def test_a_painting_without_its_pack_is_refused_with_what_there_is(
        make_service: ServiceFactory) -> None:
    service = make_service()  # no style pack: only the procedural styles
    with pytest.raises(InvalidRequest) as info:
        await service.submit(user_id="u", user_name="u", content=png(1), style="The Scream")
    assert info.value.code == "unknown_style"
    assert info.value.message.startswith("The Scream is not installed here")
    assert "mosaic" in info.value.message
    assert await service.count_for_user("u") == 0


async def test_a_preset_style_is_stored_like_an_upload(make_service: ServiceFactory,
                                                      storage: BlobStorage) -> None:
    presets = pytest.importorskip("stylizer.presets")
    service = make_service()
    view = await service.submit(user_id="u", user_name="u", content=png(1), style="mosaic")
    assert view.style == "mosaic"
    expected = presets.image_bytes(presets.get("mosaic"))
    assert view.style_hash is not None
    assert storage.get(view.style_hash) == expected


async def test_per_user_limit(make_service: ServiceFactory, settings: Settings) -> None:
    service = make_service(settings_=settings.replace(max_jobs_per_user=2))
    first = await service.submit(user_id="a", user_name="a", content=png(1), style_image=STYLE)
    await service.submit(user_id="a", user_name="a", content=png(2), style_image=STYLE)
    with pytest.raises(LimitExceeded, match="You already have 2 jobs in the queue"):
        await service.submit(user_id="a", user_name="a", content=png(3), style_image=STYLE)
    await service.submit(user_id="b", user_name="b", content=png(3), style_image=STYLE)
    await service.cancel(first.id, caller=Caller("a"))
    await service.submit(user_id="a", user_name="a", content=png(3), style_image=STYLE)


async def test_global_queue_limit(make_service: ServiceFactory, settings: Settings) -> None:
    service = make_service(settings_=settings.replace(max_queue=3))
    for i in range(3):
        await service.submit(user_id=f"u{i}", user_name="x", content=png(i), style_image=STYLE)
    with pytest.raises(LimitExceeded, match="The queue is full") as info:
        await service.submit(user_id="u9", user_name="x", content=png(9), style_image=STYLE)
    assert info.value.code == "limit_exceeded"
    assert isinstance(info.value, UserError)


def _succeed(req: JobRequest) -> list[PoolEvent]:
    return [JobStarted(req.job_id, 0, 1), JobSucceeded(req.job_id, png(5), {"steps": 5})]


async def test_round_robin_order_and_positions(make_service: ServiceFactory,
                                              clock: TickingClock) -> None:
    fake = FakeExecutor(workers=1)
    service = make_service(fake)
    ids: dict[str, str] = {}
    # a1 a2 a3 b1 b2 c1, in that order of arrival.
    for name in ("a1", "a2", "a3", "b1", "b2", "c1"):
        view = await service.submit(user_id=name[0], user_name=name[0], content=png(len(ids)),
                                    style_image=STYLE)
        ids[name] = view.id
    expected = ["a1", "b1", "c1", "a2", "b2", "a3"]
    assert [await service.queue_position(ids[n]) for n in expected] == [1, 2, 3, 4, 5, 6]

    await service.start()
    served: list[str] = []
    by_id = {v: k for k, v in ids.items()}
    while len(served) < 6:
        await _until_submitted(fake, len(served) + 1)
        req = fake.submitted[-1]
        # The job a free worker takes is always the one that was at position 1.
        served.append(by_id[req.job_id])
        assert await service.queue_position(req.job_id) is None
        remaining = [n for n in expected if n not in served]
        positions = [await service.queue_position(ids[n]) for n in remaining]
        assert positions == list(range(1, len(remaining) + 1))
        fake.emit(JobStarted(req.job_id, 0, 1))
        fake.emit(JobSucceeded(req.job_id, png(50 + len(served)), {}))
    assert served == expected


async def test_the_least_recently_served_user_goes_first(make_service: ServiceFactory) -> None:
    fake = FakeExecutor(workers=1, auto=_succeed)
    service = make_service(fake)
    rec = Recorder()
    service.subscribe(rec)
    await service.start()
    done = await service.submit(user_id="a", user_name="a", content=png(1), style_image=STYLE)
    await service.wait(done.id, timeout_s=5)
    await service.stop()
    # "a" was served a moment ago, "b" never: b goes first although a asked first.
    fake = FakeExecutor(workers=1)
    again = make_service(fake)
    a2 = await again.submit(user_id="a", user_name="a", content=png(2), style_image=STYLE)
    b1 = await again.submit(user_id="b", user_name="b", content=png(3), style_image=STYLE)
    assert await again.queue_position(b1.id) == 1
    assert await again.queue_position(a2.id) == 2
    await again.start()
    await _until_submitted(fake, 1)
    assert fake.submitted[0].job_id == b1.id


async def test_eta_from_recent_durations(make_service: ServiceFactory, settings: Settings,
                                         clock: TickingClock) -> None:
    fake = FakeExecutor(workers=2)
    service = make_service(fake, default_job_s=100.0,
                           settings_=settings.replace(max_jobs_per_user=10))
    first = await service.submit(user_id="a", user_name="a", content=png(1), style_image=STYLE)
    # The default guess:
    assert (await service.position_and_eta(first.id))[1] == pytest.approx(100.0)
    await service.start()
    await _until_submitted(fake, 1)
    clock.advance(30)  # the job takes 30 s
    fake.emit(JobSucceeded(first.id, png(2), {}))
    await service.wait(first.id, timeout_s=5)
    await service.stop()

    # Not started: the worker count comes from the settings.
    later = make_service(FakeExecutor(workers=2), default_job_s=100.0,
                         settings_=settings.replace(max_jobs_per_user=10, workers=2))
    views = [await later.submit(user_id="b", user_name="b", content=png(10 + i),
                                style_image=STYLE) for i in range(5)]
    for position, view in enumerate(views, start=1):
        eta = (await later.position_and_eta(view.id))[1]
        assert eta == pytest.approx(30.0 * math.ceil(position / 2), rel=0.01)
    assert (await later.get(first.id)).seconds == pytest.approx(30.0, abs=0.1)
    assert (await later.position_and_eta(first.id))[1] is None


async def test_unknown_jobs(make_service: ServiceFactory) -> None:
    service = make_service()
    for call in (service.get("zzzzzz"), service.queue_position("zzzzzz"),
                 service.cancel("zzzzzz", caller=Caller.cli()), service.read_input("zzzzzz"),
                 service.set_delivery("zzzzzz", progress_message_id="1")):
        with pytest.raises(JobNotFound, match="zzzzzz"):
            await call


async def test_history_and_counts(make_service: ServiceFactory) -> None:
    service = make_service()
    made = [await service.submit(user_id="a", user_name="a", content=png(i), style_image=STYLE)
            for i in range(3)]
    await service.submit(user_id="b", user_name="b", content=png(9), style_image=STYLE)
    history = await service.list_for_user("a", limit=2)
    assert [v.id for v in history] == [made[2].id, made[1].id]  # newest first
    assert [v.id for v in await service.list_for_user("a", limit=2, offset=2)] == [made[0].id]
    assert await service.count_for_user("a") == 3
    assert await service.count_for_user("z") == 0
    assert len(await service.active_jobs()) == 4
    stats = await service.stats(caller=Caller.cli())
    assert stats["queue_depth"] == 4
    assert stats["running"] == 0
    assert stats["jobs_today"] == 4
    assert stats["batch_limit"] == 1  # the fake executor's


async def _until_submitted(fake: FakeExecutor, n: int) -> None:
    await until(lambda: len(fake.submitted) >= n, within=5)


# -- nothing CPU-bound on the event loop ----------------------------------------------------

async def _worst_loop_lag(work: Awaitable[Any]) -> tuple[float, BaseException | None]:
    """Runs `work` beside a ticker that sleeps 10 ms at a time; returns the longest the
    ticker was kept waiting past its 10 ms (seconds), and what `work` raised."""
    loop = asyncio.get_running_loop()
    lags: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            start = loop.time()
            await asyncio.sleep(0.01)
            lags.append(loop.time() - start - 0.01)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.02)
    raised: BaseException | None = None
    try:
        await work
    except Exception as exc:  # noqa: BLE001 - handed back to the test
        raised = exc
    finally:
        done.set()
        await task
    return max(lags), raised


def _text_flood_png(chunks: int = 200_000) -> bytes:
    """A small PNG with `chunks` tiny text chunks (3.8 MB): Pillow parsed them for 1-3 s,
    on the event loop, when submit probed it."""
    data = png(1)
    chunk = b"tEXt" + b"key\0val"
    tagged = struct.pack(">I", 7) + chunk + struct.pack(">I", zlib.crc32(chunk))
    at = data.index(b"IDAT") - 4
    return data[:at] + tagged * chunks + data[at:]


async def test_a_metadata_flood_neither_stalls_the_loop_nor_is_accepted(
        make_service: ServiceFactory, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    service = make_service()
    lag, raised = await _worst_loop_lag(service.submit(
        user_id="u", user_name="u", content=_text_flood_png(), style_image=STYLE))
    assert isinstance(raised, InvalidRequest)
    assert raised.code == "image_too_large"
    assert lag < 0.5  # generous for 2 shared cores; it was the whole 1-3 s
    assert await _count(sessionmaker) == 0


async def test_a_slow_probe_does_not_hold_up_other_coroutines(
        make_service: ServiceFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # Whatever makes a probe slow (a huge file, a loaded machine), it runs off the loop.
    # A probe on the loop would stall it for the probe's whole time; the bound is half of
    # that, so that a pause of the loop's own (a full garbage collection late in a long
    # test run, a busy VM: 0.69 s was seen once) does not pass for one.
    real_probe = images.probe
    probe_s = 1.6

    def slow_probe(data: bytes, **kwargs: Any) -> images.ImageInfo:
        time.sleep(probe_s)
        return real_probe(data, **kwargs)

    monkeypatch.setattr(images, "probe", slow_probe)
    service = make_service()
    gc.collect()
    start = time.monotonic()
    lag, raised = await _worst_loop_lag(service.submit(
        user_id="u", user_name="u", content=png(1), style_image=STYLE))
    assert raised is None
    assert time.monotonic() - start >= 2 * probe_s  # two: the photo and the style image
    assert lag < probe_s / 2
