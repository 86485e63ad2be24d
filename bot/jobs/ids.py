"""Short job ids people can read aloud and type: six characters, no look-alikes."""

from __future__ import annotations

import re
import secrets

# No 0/o, 1/l/i: ids get typed from screenshots. 31**6 is about 890 million ids.
ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"
LENGTH = 6
_ID_RE = re.compile(rf"^[{ALPHABET}]{{{LENGTH}}}$")


def new_job_id() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


_DECORATION = re.compile(r"^(?:job\s+)?#?")


def normalize_job_id(text: str) -> str:
    """What a person typed or pasted to the canonical form: trimmed, lower case, without
    a '#', the backticks the bot's messages put around an id (`k3x9p2`), or the word
    "job" of a message's footer ("job k3x9p2")."""
    text = text.strip().strip("`").strip().lower()
    return _DECORATION.sub("", text).strip("`").strip()


def looks_like_job_id(text: str) -> bool:
    return bool(_ID_RE.match(normalize_job_id(text)))
