"""The paper's ablation tables as declarative `Study` objects (see `ablations.studies`)."""

from ablations.studies import PAPER_SOURCE, STUDIES, Param, Row, Study, get_study, row_config

__all__ = ["PAPER_SOURCE", "STUDIES", "Param", "Row", "Study", "get_study", "row_config"]
