"""Self-supervised pretraining of registered backbones on unlabelled clips (``vkit pretrain``).

- :mod:`~vkit.core.ssl.augment`: random views (mmaction2's crop boxes, MONAI's volume transforms).
- :mod:`~vkit.core.ssl.vicreg`: VICReg on clip embeddings, any backbone.
- :mod:`~vkit.core.ssl.mae`: VideoMAE-style tube-masked autoencoding, ViT-type backbones (TimeSformer).
- :mod:`~vkit.core.ssl.objectives`: objectives by name, and what ``auto`` picks.
- :mod:`~vkit.core.ssl.train`: the clip cache and the resumable training loop.

The command around them (inventory, decoding, the store) is :mod:`vkit.workflows.pretrain`.
"""
from __future__ import annotations
