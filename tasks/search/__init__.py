"""Search: embed the query, ask the vector store (and Postgres full text in hybrid mode), and
score retrieval quality.

``searcher.py`` is the search path the CLI and the HTTP service share; ``fulltext.py`` the
keyword side of hybrid search; ``query_batching.py`` the service's micro-batched query
embedding; ``evaluation.py`` the metrics on labeled queries; ``tasks.py`` the Prefect task.
"""
