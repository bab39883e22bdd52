"""Durations as users type them: ``3h``, ``90m``, ``45s``, ``1d``, ``2h30m`` or plain seconds."""
import re

from launcher.errors import UsageError

_DURATION = re.compile(r"(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?")


def seconds(text, flag="--timeout"):
    """``"3h"`` -> 10800; a UsageError naming ``flag`` for anything else or for zero."""
    text = str(text).strip().lower()
    if re.fullmatch(r"[0-9]+", text):
        value = int(text)
    else:
        match = _DURATION.fullmatch(text)
        if not text or not match:
            raise UsageError("%s takes a duration such as 3h, 90m, 2h30m or 3600, got %r" % (flag, text))
        days, hours, minutes, secs = (int(g or 0) for g in match.groups())
        value = ((days * 24 + hours) * 60 + minutes) * 60 + secs
    if value <= 0:
        raise UsageError("%s must be positive, got %r" % (flag, text))
    return value


def words(value):
    """3600 -> "1 h", 5400 -> "1.5 h", 604800 -> "7 days"."""
    if value >= 86400 and value % 86400 == 0:
        return "%d day%s" % (value // 86400, "" if value == 86400 else "s")
    if value >= 3600:
        return "%g h" % round(value / 3600.0, 2)
    return "%g min" % round(value / 60.0, 1)
