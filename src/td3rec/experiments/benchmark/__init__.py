"""A declared comparison grid, run cell by cell and resumable (``td3rec benchmark CONFIG.yaml``).

The grid is datasets × methods × budgets (``n`` synthetic sequences or real users, and their length ``L``) ×
learner architectures × initialisation protocols × seeds. One **cell** is one learner of one architecture,
initialised by one protocol with one seed, trained on one kind of training data and tested on the real test
users; ``whole`` cells are full-data learners (early stopping), one per dataset × architecture × seed.

Methods (:data:`BUILTIN_METHODS`):

- ``whole``: the full data (early stopping; ``whole.*`` settings);
- real subsets (:mod:`td3rec.summary.real_subset`): ``random`` (a new draw per seed), ``longest``,
  ``popular``, ``herding``, ``kcenter`` (the last two on the distillation teacher's features);
- distilled summaries: ``td3``, ``farzi`` and the TD3 ablations ``td3-no-feature`` (``feature_weight: 0``),
  ``td3-no-augment`` (``inner.augment: false``), ``td3-fixed-unroll`` (``random_unroll: false``),
  ``td3-full-bptt`` (``random_unroll: false``, ``window = inner_steps``), ``td3-learned-v``
  (``learn_item_factor: true``), ``td3-reset-step`` (``reset: step``); any other name with ``kind: td3`` or
  ``kind: farzi`` and ``distill`` overrides declares a variant.

**Resume.** Every finished cell is written atomically to ``RESULTS/cells/KEY.json``, ``KEY`` being a hash of
the cell's resolved settings (dataset fingerprint, method and its resolved distillation settings, budget,
architecture and learner options, protocol, seed, training and metric settings). A cell whose file exists is
never recomputed; a rerun of the same command computes only the missing cells (changing a setting changes
the keys of the cells it affects, and only those are computed). Teachers (one per dataset and architecture,
trained once) live in ``RESULTS/teachers/`` and summaries (one per dataset × method × budget, distilled once)
in ``RESULTS/summaries/``; both are ``td3rec train`` / ``td3rec distill`` run folders and an interrupted one
continues from its own resume checkpoint.

**Results.** ``RESULTS/results.csv`` and ``RESULTS/results.json`` hold one row per finished cell of the
current grid (rewritten atomically as cells finish); ``results.json`` also records the teachers' training
times and the resolved config. ``td3rec report RESULTS`` turns them into tables and figures.

**Modules**, one job each: :mod:`.config` (the declaration, YAML, validation), :mod:`.plan` (the cells and
their keys), :mod:`.compute` (one cell: teachers, subsets, summaries, the learner), :mod:`.table` (the results
table), :mod:`.runner` (:func:`~td3rec.experiments.benchmark.runner.run_benchmark`: all of it, resumable).
"""
