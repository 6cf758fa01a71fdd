"""recsvc: recommendation and personalization engine for retail and e-commerce loyalty."""

from formats import __version__ as __version__
