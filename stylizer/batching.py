"""Which jobs can be painted together as one batch, decided without decoding a pixel.

Two jobs are compatible when their photos come out at the same size and every painting
parameter but the style weight (the user's "strength") is the same: then one
`Stylizer.run_batch` optimises both, each with its own targets, style weight and
optimiser history, and the GPU runs one large batch instead of many small ones. The
key is computed once, when a job is queued, from the image header; the worker checks
the decoded sizes again and paints any that differ separately.

No torch here: the bot process imports this module.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from stylizer.images import fitted_size

# Parameters each image of a batch may have its own value of.
PER_IMAGE = frozenset({"style_weight"})
# A batch holds at most this many 512x512 images' worth of pixels, so that a batch of
# 1024-px jobs is a quarter as long as one of 512-px jobs.
REFERENCE_SIDE = 512
_KEY = re.compile(r"^(\d+)x(\d+):[0-9a-f]+$")


def batch_key(upright_size: tuple[int, int], params: Mapping[str, Any]) -> str:
    """"WxH:digest": the painted size and a digest of the parameters a batch shares."""
    w, h = fitted_size(*upright_size, int(params["size"]))
    return f"{w}x{h}:{shared_digest(params)}"


def shared_digest(params: Mapping[str, Any]) -> str:
    """A digest of the parameters that every image of one batch must share."""
    shared = {k: v for k, v in params.items() if k not in PER_IMAGE}
    canonical = json.dumps(shared, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def batch_limit(key: str, max_batch: int) -> int:
    """How many jobs with this key go in one batch, given the pool's limit at 512x512."""
    m = _KEY.match(key)
    if m is None or max_batch <= 1:
        return 1
    pixels = int(m.group(1)) * int(m.group(2))
    budget = max_batch * REFERENCE_SIDE * REFERENCE_SIDE
    return max(1, min(max_batch, budget // max(1, pixels)))
