"""The edges of the pipeline: files in, files out.

Reading turns a file into the working image (BGR, 8 or 16 bit) plus what must be restored at the
end (grey, alpha, bit depth); writing puts it back, atomically.

* :mod:`.images` - reading, encoding, writing, and the image contract every front-end uses:
  ``to_pipeline`` (a read image -> the pipeline's array), ``from_pipeline`` (the result -> the
  input's kind: grey, alpha, bit depth), ``is_grey`` (the one grey test).
* :mod:`.headers` - byte-level checks of JPEG, TIFF and PNG headers, before anything is decoded.
* :mod:`.atomic` - atomic writes (``StagedFiles`` for a group that appears together).
* :mod:`.video` - checked PyAV decoding, encoding with the audio remuxed (extra ``video``).
"""
