"""``BaM_MIND``: the MIND model with BaM's defaults (``selection: p``, ``multi_loss: True``).

BaM: Jaeri Lee, Jeongin Yun, U Kang, "Towards True Multi-interest Recommendation: Enhanced Scheme for
Balanced Interest Training", IEEE BigData 2024. The name resolves to the MIND class; its defaults come
from ``properties/model/MIND.yaml`` then ``properties/model/BaM_MIND.yaml``.
"""

from recbole_ext.model.sequential_recommender.mind import MIND
from recbole_ext.registry import register_model_alias

register_model_alias("BaM_MIND", "MIND")
BaM_MIND = MIND
