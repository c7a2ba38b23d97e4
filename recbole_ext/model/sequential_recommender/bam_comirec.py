"""``BaM_ComiRec``: the ComiRec model with BaM's defaults (``selection: p``, ``multi_loss: True``).

BaM: Jaeri Lee, Jeongin Yun, U Kang, "Towards True Multi-interest Recommendation: Enhanced Scheme for
Balanced Interest Training", IEEE BigData 2024. The name resolves to the ComiRec class; its defaults come
from ``properties/model/ComiRec.yaml`` then ``properties/model/BaM_ComiRec.yaml``.
"""

from recbole_ext.model.sequential_recommender.comirec import ComiRec
from recbole_ext.registry import register_model_alias

register_model_alias("BaM_ComiRec", "ComiRec")
BaM_ComiRec = ComiRec
