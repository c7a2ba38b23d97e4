"""``BaM_REMI``: the REMI model with BaM's defaults (``selection: p``, ``multi_loss: True``).

BaM: Jaeri Lee, Jeongin Yun, U Kang, "Towards True Multi-interest Recommendation: Enhanced Scheme for
Balanced Interest Training", IEEE BigData 2024. The name resolves to the REMI class; its defaults come
from ``properties/model/REMI.yaml`` then ``properties/model/BaM_REMI.yaml``.
"""

from recbole_ext.model.sequential_recommender.remi import REMI
from recbole_ext.registry import register_model_alias

register_model_alias("BaM_REMI", "REMI")
BaM_REMI = REMI
