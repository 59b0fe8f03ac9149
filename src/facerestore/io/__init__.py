"""The edges of the pipeline: files in, files out.

Reading turns a file into the working image (BGR, 8 or 16 bit) plus what must be restored at the
end (grey, alpha, bit depth); writing puts it back, atomically.
"""
