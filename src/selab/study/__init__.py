"""Studies: arms x seeds of ordinary selab runs, aggregated with honest statistics.

``selab study run configs/studies/<study>/study.yaml`` runs each (arm, seed) cell as a
``selab fit`` then ``selab test`` subprocess into ``<out>/<arm>/seed_<seed>/`` (skipping finished
cells, resuming interrupted ones), locally, N at a time, on Ray or on SLURM; ``selab study report
<out>`` writes the per-arm statistics (mean, std, 95% t-interval, paired difference to the baseline,
difference to the published number) as CSV, Markdown and a figure.

- :mod:`.spec`: the study file (:func:`load_study`, :class:`Study`, :class:`StudyError`).
- :mod:`.cells`: what each cell runs and whether it is done (:func:`plan`, :func:`run_cell`).
- :mod:`.launchers`: local, Ray (``[ray]`` extra) and submitit/SLURM (``[slurm]`` extra).
- :mod:`.stats`: t-intervals and paired differences; :mod:`.results`: tables and figure.
"""

from .cells import Cell, plan, run_cell
from .cli import main
from .results import collect, summarise, write_report
from .spec import Arm, Study, StudyError, load_study, parse_study
from .stats import paired_difference, summarize, t_interval

__all__ = [
    "Arm",
    "Cell",
    "Study",
    "StudyError",
    "collect",
    "load_study",
    "main",
    "paired_difference",
    "parse_study",
    "plan",
    "run_cell",
    "summarise",
    "summarize",
    "t_interval",
    "write_report",
]
