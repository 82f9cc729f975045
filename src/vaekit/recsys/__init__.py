"""Recommendations from a VAE (Mult-VAE / Mult-DAE, Liang et al. 2018) on implicit feedback.

Interaction files are read and filtered in :mod:`vaekit.recsys.interactions`, split by users (strong
generalisation) in :mod:`vaekit.recsys.split`, MovieLens datasets located or downloaded by
:mod:`vaekit.recsys.movielens`; ranking metrics are :mod:`vaekit.recsys.metrics` and the baselines
(popularity, EASE) :mod:`vaekit.recsys.baselines`. Documentation: docs/recommend.md.
"""
