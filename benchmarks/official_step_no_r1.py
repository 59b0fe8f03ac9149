"""The reference kit's one official GFPGANModel step, without R1 (the second case of check_training.py).

    /tmp/refenv/bin/python benchmarks/official_step_no_r1.py OUT [--size 64] [--seed 0] [--batch 2]

Runs ../shared/reference/official_train_step.py unchanged except that ``net_d_reg_every`` is 2, so
iteration 1 skips the lazy R1 (and optimizer_d gets the official lr/betas for k = 2). The files in
OUT have the same layout (init.pt records the options used).
"""
import os
import sys

KIT = os.environ.get("REFERENCE_KIT", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                                   "shared", "reference"))
sys.path.insert(0, KIT)
import official_train_step as kit  # noqa: E402

_make_options = kit.make_options


def make_options_no_r1(size, tmp, seed):
    opt, init, saved = _make_options(size, tmp, seed)
    opt["train"]["net_d_reg_every"] = 2
    saved["train"]["net_d_reg_every"] = 2
    return opt, init, saved


kit.make_options = make_options_no_r1

if __name__ == "__main__":
    kit.main()
