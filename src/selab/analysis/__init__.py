"""Dissect checkpoints and compare runs: the logic behind ``notebooks/`` and the TensorBoard callbacks.

Everything here is plain functions over a model, a data loader or a ``logs/`` folder, so the
notebooks stay short calls plus plots and the numbers are tested like any other code.

- Checkpoints: :func:`resolve_checkpoint`, :func:`load_checkpoint`, :func:`datamodule_for`.
- Evaluation: :func:`evaluate` (top-1/top-5, per-class accuracy, confusion matrix, most-confused
  pairs and their images), optionally collecting attention gates on the same pass.
- Attention: :func:`attention_blocks` finds the channel-attention modules of any backbone,
  :class:`GateHooks` reads their gates, :class:`GateStats` accumulates them (per channel, per
  class, histogram), :func:`without_attention` swaps blocks for ``nn.Identity`` (the SE paper's
  ablation, on the fly), :func:`stage_ablation` measures what that costs.
- Cost: :func:`count_macs` (``torch.utils.flop_counter``; MACs = FLOPs / 2), :func:`complexity`
  (with vs without attention), :func:`module_table`.
- Runs: :func:`find_runs`, :func:`read_run`, :func:`results_table`, :func:`plot_learning_curves`
  (the run-folder layout itself lives in :mod:`selab.runs`).

Tables are pandas DataFrames; :func:`to_markdown` prints one readably and :func:`show` renders it in
Jupyter. Plots use matplotlib, imported only when a ``plot_*`` function is called.
"""

from ..tables import format_value, formatted, show, to_markdown  # noqa: F401
from .checkpoints import (  # noqa: F401
    datamodule_for,
    example_input,
    load_checkpoint,
    pick_device,
    resolve_checkpoint,
)
from .complexity import complexity, count_macs, count_params, module_table  # noqa: F401
from .evaluation import Evaluation, evaluate, most_confused, stage_ablation  # noqa: F401
from .gates import (  # noqa: F401
    AttentionBlock,
    GateHooks,
    GateStats,
    attention_blocks,
    attention_name,
    attention_types,
    default_class_blocks,
    find_attention,
    gate_source,
    without_attention,
)
from .plots import (  # noqa: F401
    plot_class_gates,
    plot_confused_examples,
    plot_confusion,
    plot_gate_distributions,
    plot_learning_curves,
    plot_per_class,
)
from .runs import (  # noqa: F401
    HPARAMS,
    HPARAMS_TAG,
    Run,
    _hparam_value,
    find_runs,
    hparams_table,
    read_hparams,
    read_run,
    read_runs,
    results_table,
)
