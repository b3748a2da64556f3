"""gunicorn deployment only: the worker class, its thread pool, memory trimming and `serve()`.

Never imported by the library or the embedding path (`create_app`/`create_blueprint`).
"""
