"""The LLM pipeline library: CPU engine wrapper, wave scheduler, sampling, incremental detokenization.

Serving-time code imported by the Python models under ``model_repository/{tensorrt_llm,preprocessing,
postprocessing,tensorrt_llm_bls}``. It needs numpy, ``tokenizers`` and, for the engine, ``onnxruntime-genai``.
"""
