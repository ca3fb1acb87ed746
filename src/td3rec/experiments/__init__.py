"""td3rec.experiments: the experiment layer above distillation — studies that train, distill and evaluate many
times and compare the outcomes.

- :mod:`.benchmark`: a declared comparison grid (datasets × methods × budgets × learners × protocols × seeds),
  run cell by cell and resumable (``td3rec benchmark``);
- :mod:`.report`: tables and figures from a grid's results (``td3rec report``);
- :mod:`.proxy`: a summary as a cheap proxy for model selection (``td3rec proxy``).

The floors below (:mod:`td3rec.evaluation` and everything under it) never import this package; a test checks it.
"""
