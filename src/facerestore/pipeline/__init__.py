"""One restoration pipeline behind every front-end (CLI, web service, video, Python callers).

:class:`~facerestore.pipeline.options.RestoreOptions` holds every setting, validated once;
:class:`~facerestore.pipeline.restorer.Restorer` turns one image into restored faces and a pasted
result; :mod:`~facerestore.pipeline.batch` runs files through it into the official output layout.
"""
