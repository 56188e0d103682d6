"""The studio's models: the shared state, the document, the session, the list model, undo commands,
the error index, job threads and the image cache. No widgets (tests/test_architecture.py)."""
