"""Index: keep each vector-store namespace equal to its dbt documents model, paying only for
what changed.

``documents.py`` reads the models declared with ``meta.embedding``; ``chunking.py`` cuts them
into token-bounded chunks; ``run.py`` is an index run (plan, apply, validate and switch);
``ledger.py`` owns the ``index_state`` tables (what each namespace holds, locks, the serving
namespace); ``namespaces.py`` names blue/green namespaces; ``embedding_cache.py`` keeps vectors
by content hash; ``tasks.py`` holds the stage's Prefect tasks.
"""
