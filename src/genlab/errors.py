"""The exceptions genlab raises for bad input; the CLI prints them as one line and exits 2."""


class GenlabError(ValueError):
    """Base class: input, data, a run folder or a request that genlab cannot use."""


class ConfigError(GenlabError):
    """A configuration value or combination that genlab cannot run."""


class DataError(GenlabError):
    """Input data that genlab cannot use; the message names the file, row or value."""


class RunError(GenlabError):
    """A run folder that is missing, incomplete, or of the wrong kind for the request."""


class TrainingDiverged(GenlabError):
    """A non-finite loss or a collapsed adversarial game; the last good checkpoint is kept."""
