"""Redis feature store: owns every Redis key (customer and product features).

Built by the feature-store issue; the offline training path does not use Redis.
"""
