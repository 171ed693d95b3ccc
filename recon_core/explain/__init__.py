"""Why a diagnostic decision changed: attribution maps of the classifier."""
