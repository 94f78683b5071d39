"""Deployment of the GPU target: the pinned image (``image``), which ONNX models TensorRT serves
(``tensorrt``), the commands of the GPU builds and the flags each pinned tool documents (``gpubuild``,
``flags``), calibration inputs for int8 (``calibration``), Kubernetes manifests generated from a plan
(``kubernetes``, ``adapter``) and ``fleet deploy`` (``command``).
"""
