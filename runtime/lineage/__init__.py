"""Whole-pool scores and lineage: ``pool.scores.parquet`` and ``dslrun why``.

``pool_scores.py`` writes every loaded sample's scores with ``kept`` and, for the
others, ``dropped_by`` (the step that removed it) and ``drop_reason``; ``reasons.py``
says why each kind of step dropped a row; ``score_columns.py`` holds the columns it is built
from without copying the steps'; ``why.py`` prints one sample's path.
"""
