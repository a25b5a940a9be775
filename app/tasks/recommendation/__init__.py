"""Recommendation: the model scores every item for a user; the top-k unseen items come back with titles."""
