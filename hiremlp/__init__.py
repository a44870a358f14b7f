"""A faithful Hire-MLP (Guo et al., CVPR 2022) in which every part the paper ablates is a switch."""

from .config import BRANCHES, CROSS_REGION, FUSIONS, MIXERS, NORMS, PADDINGS, SHIFT_SCHEDULES, HireMLPConfig
from .counting import StagePlan, check_input_size, count_macs, count_params, map_sizes, stage_plan
from .hire_module import HireModule
from .mixers import make_mixer
from .model import HireMLP, build_model
from .presets import PRESET_IMAGE_SIZE, PRESETS, create_model, get_config, row_config

__all__ = [
    "BRANCHES", "CROSS_REGION", "FUSIONS", "MIXERS", "NORMS", "PADDINGS", "SHIFT_SCHEDULES", "HireMLPConfig", "HireMLP",
    "HireModule", "PRESETS", "PRESET_IMAGE_SIZE", "StagePlan", "build_model", "check_input_size", "count_macs",
    "count_params", "create_model", "get_config", "make_mixer", "map_sizes", "row_config", "stage_plan",
]
