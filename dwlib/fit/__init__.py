"""Fitters with intervals, and the sentences notebooks print about them.

    stats     shared statistics: the `Fit` result type, input checks, intervals, resampling, the vertex
              of a local quadratic (best depth, best learning rate), batched L-BFGS
    depth     critical depth: the calibrated U-shape test, D* and its interval, D* across annealed budgets
    tau       gradient persistence τ per run, and τ(W) as power law vs logarithm
    laws      Chinchilla form and the Depth Delusion ansatz, with fit health; the two compared on held-out shapes
    isoflop   isoFLOP profiles: optimal N, T, D, W per budget and their power laws in C
    compare   loss gap between two shapes over seeds; monotonicity in a size
    accuracy  k-hop task accuracy: per-shape table, seed-paired comparison, loss vs accuracy ranking, depth per hop
    verdicts  one sentence-writer per kind of verdict

Every fitter takes plain arrays (or the store's frames, through `*_from_frame`), checks them (ValueError
naming the bad value) and returns a `Fit`. numpy / scipy / pandas only: no torch.
"""
from .accuracy import accuracy_table, by_hops, compare_accuracy, depth_for_accuracy, ranking_agreement
from .compare import check_monotone, compare_losses
from .depth import (ALPHA, VERDICTS, critical_depth_by_budget, critical_depth_from_frame, fit_critical_depth,
                    usable_runs)
from .isoflop import PAPER_DEPTH_EXPONENT, PAPER_WIDTH_EXPONENT, fit_isoflop
from .laws import (CHINCHILLA_EPOCH, CHINCHILLA_EPOCH_CI, CHINCHILLA_HOFFMANN, chinchilla_loss, compare_laws,
                   d_crit, depth_width_loss, fit_chinchilla, fit_depth_width_law, read_epoch_points)
from .stats import Fit, fmt, fmt_ci, local_vertex
from .tau import PAPER_TAU_EXPONENT, fit_gradient_persistence, fit_tau_scaling, tau_by_width
from . import verdicts
