"""Evaluation library: one job per module.

* :mod:`.resize`   MATLAB-exact bicubic ``imresize`` (reproduces the benchmark LR files bit for bit)
* :mod:`.color`    BT.601 Y, modcrop/shave, image loading (gray files stay ``HxW``)
* :mod:`.quality`  PSNR/SSIM under the SR protocol; grayscale conventions ``gray-raw``/``gray-as-y``
* :mod:`.datasets` benchmark-layout folders, HR-only folders, explicit HR/LR pairs
* :mod:`.cost`     per-layer params and MACs, FP vs binary, BNN-convention totals
* :mod:`.evaluate` run a network or the bicubic baseline over a dataset and score it

Import the submodules directly (``from scales_cli.metrics.quality import score``); this package
imports nothing so that numpy-only users never pay for torch.
"""
