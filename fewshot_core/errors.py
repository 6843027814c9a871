"""The project's error types: each message says what is wrong, where, and what to do."""


class MaskError(ValueError):
    """A mask or architecture that names no valid network."""


class DataError(RuntimeError):
    """A dataset that cannot be loaded; the message names the path and what to do."""


class SplitError(ValueError):
    """A split that cannot be made as asked, or a split file that does not hold a valid one."""


class MetricError(RuntimeError):
    """A metric that cannot produce a finite value; the message names the metric (and the split)."""


class ArtifactError(ValueError):
    """An output file of an earlier stage that cannot be read; the message names it."""


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the key and what is allowed."""


#: A value or text echoed in a message is cut to this many characters, its size said beside it.
SHOWN = 120


def cut(text: str, limit: int = SHOWN) -> str:
    """``text`` on one line (its line breaks made spaces), as it is when short, else its start and how long it
    was: a message stays one readable line."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters in all)"


def shown(value: object, limit: int = SHOWN) -> str:
    """``repr(value)`` cut to about ``limit`` characters, with its size when cut (a string's characters, a
    list's or mapping's entries, an integer's digits); built a few entries and levels deep only, so that a
    huge or deeply shared value (a YAML alias expanded) is never written out whole."""
    import reprlib

    brief = reprlib.Repr()
    brief.maxlevel, brief.maxstring, brief.maxother, brief.maxlong = 3, limit, limit, 40
    brief.maxlist = brief.maxtuple = brief.maxdict = brief.maxset = 8
    text = cut(brief.repr(value), limit)
    if isinstance(value, str) and len(value) > limit:
        return f"{text} ({len(value):,} characters)"
    if isinstance(value, (list, tuple, dict, set)) and len(value) > brief.maxlist:
        return f"{text} (a {type(value).__name__} of {len(value):,} entries)"
    if isinstance(value, int) and abs(value) >= 10**brief.maxlong:
        return f"{text} (an integer of {len(str(abs(value))):,} digits)"
    return text
