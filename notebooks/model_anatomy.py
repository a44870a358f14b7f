# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Model anatomy
#
# The presets, what each stage sees at a given input size, and what each of the paper's switches does to one Hire
# Module, measured by autograd.

# %% tags=["parameters"]
presets = None  # None: all presets (about 15 s of MAC counting on a CPU)
preset = "smoke"
image_sizes = [24, 32, 48]
map_size = (7, 7)
pixel = (6, 4)

# %%
import sys
from pathlib import Path

ROOT = Path.cwd() if (Path.cwd() / "analysis").is_dir() else Path.cwd().parent  # repo root
sys.path.insert(0, str(ROOT))
# %matplotlib inline

# %%
from IPython.display import display

import hiremlp
from analysis import anatomy
from analysis.receptive_field import plot_receptive_fields, switch_panels

# %% [markdown]
# ## Presets

# %%
anatomy.presets_table(presets)

# %% [markdown]
# ## Stages at several input sizes
#
# Padding rows/columns are where the padding switch acts; a non-empty last column means that size cannot run.

# %%
anatomy.stage_table(hiremlp.PRESETS[preset], image_sizes)

# %% [markdown]
# ## What each block mixes
#
# Per stage and block at the preset's image size: each `[...]` is a region, true rows (columns) in the order the
# inner-region MLP sees them; `r'` is a padding copy of row r, `_` a zero. `inert` names branches whose
# cross-region step mixes exactly what step 0 mixes (`hiremlp.mixing_plan`).

# %%
anatomy.mixing_table(hiremlp.PRESETS[preset], hiremlp.PRESET_IMAGE_SIZE[preset])

# %% [markdown]
# ## What each switch does
#
# Blue: input pixels the red output pixel depends on (nonzero gradient). Dashed: region borders. Hatched: padding
# beyond the map.

# %%
panels = switch_panels()
plot_receptive_fields(panels['shift step (Table 4)'], map_size, pixel)

# %%
for name, group in panels.items():
    fig = plot_receptive_fields(group, map_size, pixel, branches=('h',))
    fig.suptitle(name)
    display(fig)
