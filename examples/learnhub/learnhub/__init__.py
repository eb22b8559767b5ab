"""learnhub: the reference application pgwarden is shown and tested on.

An educational content platform (FastAPI + strawberry GraphQL + async SQLAlchemy 2.0 +
Alembic). Parts of it are deliberately imperfect, each marked ``DELIBERATE`` in the code:
two N+1 patterns and a frequent filter on an unindexed column, so that every pgwarden
capability has something real to find.
"""
