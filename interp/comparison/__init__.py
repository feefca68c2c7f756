"""Comparisons that sit above the pipeline: weight- vs activation-space task vectors.

* :mod:`interp.comparison.weights`: :func:`~interp.comparison.weights.compare`, one function
  per method, :class:`~interp.comparison.weights.CompareConfig`.
* :mod:`interp.comparison.store`: the resumable fine-tunes and aTLAS fits in the run directory.
* :mod:`interp.comparison.activation`: reading an activation (pipeline / demo) run.
* :mod:`interp.comparison.table`: the table's columns, summary and Markdown.

The ``interp compare-weights`` subcommand is :mod:`interp.cli.compare_weights`.

Nothing is imported here, so ``interp --help`` stays fast.
"""
