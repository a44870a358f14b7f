"""Run ablation studies as resumable Optuna studies: protocols, storage, grid claiming, crash recovery, CLI."""
