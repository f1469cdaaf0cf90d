"""Models: every one is a :class:`sdgar.models.base.Recommender` the trainer and evaluator drive alike."""
