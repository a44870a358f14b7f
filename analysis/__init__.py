"""Tables, statistics, figures and reports from what `sweeps` stored; a module per idea.

- `load`: results.csv / Optuna storage -> one tidy row per trial; per-epoch curves.
- `stats`: mean ± std over seeds, Welch intervals, rank agreement with the paper.
- `two_level`: the interval that counts the seeds and the test images (crossed variance decomposition).
- `multiplicity`: Holm (and BH) decisions for the family of rows against the default.
- `per_image`: kept predictions decoded and checked; `per_class`: per-class effects, prediction agreement.
- `epochs`: each row's difference per epoch and whether it still moves at the end.
- `tables`: the study's table in the paper's row order (numbers, Markdown, LaTeX).
- `figures`: ours beside the paper's, scatter, validation curves, accuracy vs test size.
- `receptive_field`: which input pixels each Hire-Module branch reaches, by autograd.
- `anatomy`: presets and per-stage geometry tables.
- `report`: writes everything for one study (`python -m analysis.report --study padding`).
- `synthetic`: a small fake run folder for tests and for trying the notebooks.
"""
