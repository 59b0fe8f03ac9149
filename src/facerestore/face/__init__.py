"""Face detection (RetinaFace, the built-in MTCNN), landmark sanity checks, alignment and
paste-back, and face tracking across video frames."""
