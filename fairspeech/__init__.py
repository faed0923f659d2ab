"""fairspeech: find the speakers a speech model serves worst, fix that, and prove nobody got worse."""

__version__ = "0.1.0"
