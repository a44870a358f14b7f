"""Run by tests/test_distributed.py as ``python tests/ddp_audit.py OUT_DIR <lightning_modules.train options>``.

One data-parallel run through the training command line's config and ``run()``; Lightning's launcher re-runs this
same command for rank 1. Each rank saves what it trained on (its sample indices per epoch), its weights and
buffers after training, and what it logged, to ``OUT_DIR/rank<r>.pt``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytorch_lightning as pl
import torch

from lightning_modules.runner import run
from lightning_modules.train import config_from_args


class Audit(pl.Callback):
    def __init__(self, out: Path) -> None:
        self.out, self.indices = out, {}

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loader, epoch = trainer.datamodule.train_dataloader(), trainer.current_epoch
        if hasattr(loader, "epoch_order"):  # device-resident CIFAR batches
            self.indices[epoch] = loader.epoch_order(epoch)[0].cpu()
        else:  # ImageFolder: (file index, position in the global order) pairs
            self.indices[epoch] = loader.loader.batch_sampler.order(epoch)
        self.batches = trainer.num_training_batches

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        torch.save({"rank": trainer.global_rank, "world": trainer.world_size, "indices": self.indices,
                    "batches": self.batches, "state": {k: v.cpu() for k, v in pl_module.model.state_dict().items()},
                    "val_acc": float(trainer.callback_metrics["val_acc"]),
                    "train_acc": float(trainer.callback_metrics["train_acc"])},
                   self.out / f"rank{trainer.global_rank}.pt")


if __name__ == "__main__":
    out = Path(sys.argv[1])
    cfg = config_from_args(sys.argv[2:])
    run(cfg, callbacks=[Audit(out)])
