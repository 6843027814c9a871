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
