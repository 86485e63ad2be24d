"""Downloading attachments: only from Discord's CDN hosts, with a byte cap and timeouts.

Attachment URLs are signed and expire, so the bytes are fetched once, right after the
command arrives, and handed to the job service, which stores them at once.
"""

from __future__ import annotations

import logging

import aiohttp

from bot.discord.validation import check_host
from bot.jobs.errors import InvalidRequest, UserError

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 30.0
TOTAL_TIMEOUT_S = 120.0
CHUNK = 64 * 1024


class AttachmentFetcher:
    def __init__(self, *, hosts: tuple[str, ...], max_bytes: int) -> None:
        self.hosts = hosts
        self.max_bytes = max_bytes
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        timeout = aiohttp.ClientTimeout(total=TOTAL_TIMEOUT_S, sock_connect=CONNECT_TIMEOUT_S,
                                        sock_read=READ_TIMEOUT_S)
        self._session = aiohttp.ClientSession(timeout=timeout,
                                              cookie_jar=aiohttp.DummyCookieJar())

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def fetch(self, url: str, *, what: str = "image") -> bytes:
        """The bytes at `url`; `UserError` if the host, size or transfer is not right."""
        check_host(url, self.hosts)
        if self._session is None:
            raise RuntimeError("AttachmentFetcher.open() was not called")
        limit_mb = self.max_bytes / 2**20
        too_big = InvalidRequest(f"The {what} is larger than {limit_mb:.0f} MB.",
                                 code="image_too_large")
        try:
            # No redirects: a redirect could lead away from the allowed hosts.
            async with self._session.get(url, allow_redirects=False) as resp:
                if resp.status != 200:
                    log.warning("attachment download answered %s", resp.status)
                    raise UserError(f"I could not download the {what} (it may have expired). "
                                    "Please upload it again.", code="download_failed")
                if resp.content_length is not None and resp.content_length > self.max_bytes:
                    raise too_big
                buf = bytearray()
                async for chunk in resp.content.iter_chunked(CHUNK):
                    buf += chunk
                    if len(buf) > self.max_bytes:
                        raise too_big
                return bytes(buf)
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.warning("attachment download failed: %s", type(exc).__name__)
            raise UserError(f"Downloading the {what} failed or took too long. Please try again.",
                            code="download_failed") from exc
