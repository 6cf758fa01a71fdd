"""recsvc: recommendation and personalization engine for retail and e-commerce loyalty."""

__version__ = "0.1.0"
