"""Why a diagnostic decision changed: attribution maps of the diagnostic models, and the failure-case
workbench's pictures of a case (wipe, error map, attribution overlay, spread against error)."""
