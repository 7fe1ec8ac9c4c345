"""Export students (and FP networks) to deployable graphs, and prove they compute what torch computes.

Formats (one module each): ``scales`` ONNX with one custom-domain node per binary layer
(:mod:`.onnx_custom`, runnable through :mod:`.reference`), ``float`` standard ONNX
(:mod:`.onnx_float`) and ``openvino`` IR with real ``BinaryConvolution`` nodes (:mod:`.openvino`).
:func:`scales_cli.export.pipeline.export_model` is the library entry point; this package imports
nothing itself, so ``import scales_cli.export.runtime`` does not pay for the exporters.
"""
