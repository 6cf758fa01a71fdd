"""The formats both halves of recsvc share, and nothing else.

The offline half (``training``) writes model bundles and reads exported events; the online
half (``recsvc``) reads bundles and writes events; ``feature_store`` sits between them. What
they exchange is defined once here: the bundle format, the event record and its validation,
the exported-events layout, the interaction weighting that training and fold-in apply alike,
id rules, loyalty vocabularies, and the plain request/response types and errors of the
serving core. This package imports no other recsvc package (import-linter checks it).
"""

__version__ = "0.1.0"
