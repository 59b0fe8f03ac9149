"""Training GFPGAN as the official ``GFPGANModel`` does (``facerestore train``; extra ``train``).

* :mod:`.config` - the option file, typed and checked at every level (``TrainConfig``).
* :mod:`.dataset`, :mod:`.degradations` - FFHQ-style data and the official degradations.
* :mod:`.networks` - building the networks from the options, reading weights, missing files.
* :mod:`.losses`, :mod:`.roi_align` - one function per loss term; RoIAlign in plain PyTorch.
* :mod:`.step` - ``GFPGANTrainer``: one iteration (generator, EMA, discriminators, R1).
* :mod:`.checkpoints` - saving and resuming (official layout; a damaged state is skipped).
* :mod:`.distributed` - torchrun: ranks, gradient averaging, the device per process.
* :mod:`.loop` - ``run_training``: iterations, logging, validation, a state saved on SIGINT/SIGTERM.
* :mod:`.components` - eye/mouth boxes of a dataset (``facerestore components``).
"""
