"""REMI: ComiRec-SA trained with interest-aware hard negatives and routing regularisation.

Yueqi Xie, Jingqi Gao, Peilin Zhou, Qichen Ye, Yining Hua, Jae Boum Kim, Fangzhao Wu, Sunghun Kim,
"Rethinking Multi-Interest Learning for Candidate Matching in Recommender Systems", RecSys 2023;
as the backbone of BaM (Lee, Yun, Kang, IEEE BigData 2024). ``BaM_REMI`` = REMI with ``selection: p``
and ``multi_loss: True``.
"""

from recbole_ext.model.sequential_recommender.comirec import ComiRec


class REMI(ComiRec):
    """REMI (Xie et al., "Rethinking Multi-Interest Learning for Candidate Matching in Recommender
    Systems", RecSys 2023), as BaM's backbone. The ComiRec-SA network with REMI's loss settings: ``rbeta`` (IHN, default 0.01) reweights the
    sampled negatives; ``rlambda`` (RR, default 100) regularises the attention, applied only with
    ``selection: hard`` as in BaM's code (``rr_hard_only: True``; set False to keep it for p / l)."""

    defaults_from = ("MultiInterest", "ComiRec")  # then properties/model/REMI.yaml: rbeta, rlambda
