"""The sweep behind docs/results.md: tune on a validation split, then test on fresh seeds.

    python -m mpi_demo sweep                  # the full study -> docs/results/, docs/results.md
    python -m mpi_demo sweep --quick          # a tiny study in about a minute -> sweep-quick/

The protocol (:mod:`mpi_demo.study.protocol`), per study (data set and model):

1. *tuning*: the uncompressed baseline and every value of each method's hyperparameter grid
   (:mod:`mpi_demo.study.plan`) trained once, with the tuning seed, on the training data
   minus a held-out validation split, and judged on that validation split only. Each
   method's chosen value is the most compressive one within one point of the baseline's
   validation accuracy; when it sits at an edge of the grid, the grid is extended past that
   edge and the new values trained, until the choice is inside the grid (or a limit of
   extensions is reached, which the report then says);
2. *testing*: each chosen setting and the baseline trained on fresh seeds (not the tuning
   seed) and evaluated on the test set once, at the end of training;
3. *statistics* (:mod:`mpi_demo.study.stats`): per-seed paired differences against the
   baseline of the same seed, their mean with a 95 % t confidence interval, and both
   rules, "mean within one point" and "every seed within one point".

Modules: :mod:`~mpi_demo.study.plan` (what is trained), :mod:`~mpi_demo.study.runner`
(training one configuration, in parallel processes), :mod:`~mpi_demo.study.cache` (the
run cache, keyed by configuration and code hash), :mod:`~mpi_demo.study.protocol` (the
two phases), :mod:`~mpi_demo.study.stats`, :mod:`~mpi_demo.study.report` (JSON, CSV,
Markdown), :mod:`~mpi_demo.study.cli`.
"""
