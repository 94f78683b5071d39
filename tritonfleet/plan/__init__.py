"""The placement planner, ``fleet plan --gpus SPEC [--name NAME]``: packs the fleet's models onto GPUs by
memory and writes a planned config per model (``configs/<NAME>.pbtxt``, served with
``--model-config-name=<NAME>``), a report and the Kubernetes resource requests.

``gpus`` (the GPU table), ``spec`` (inventory specs), ``memory`` (what each model needs, with sources),
``pack`` (placement), ``render`` (planned configs), ``report`` (table, chart, JSON, Kubernetes fragment),
``command`` (the CLI). The throughput records of ``fleet tune`` it reads are ``tritonfleet.spec.tuning``.
"""
