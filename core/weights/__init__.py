"""Reading other ecosystems' checkpoints safely into vkit backbones.

Modules (each one job):

- :mod:`vkit.core.weights.formats`: read a file (``.safetensors``, or ``.pth/.pt/.ckpt/.bin``
  through ``torch.load(weights_only=True)`` only) into a flat ``{key: tensor}`` state dict and
  say which ecosystem wrote it (mmengine/mmaction2, MONAI bundle, plain state dict).
- :mod:`vkit.core.weights.prefixes`: match the file's keys to a model's keys, stripping
  ``backbone.`` / ``module.`` / ``model.`` / ``net.`` / ``_orig_mod.`` when exactly one mapping fits.
- :mod:`vkit.core.weights.inflate`: adapt a stem whose input channels differ (RGB -> 1 channel).
- :mod:`vkit.core.weights.run_ref`: ``pretrained=run:ID`` (weights written by ``vkit pretrain``).
"""
from __future__ import annotations
