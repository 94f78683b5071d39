"""``fleet bench llm``: the served streaming benchmark (:mod:`.served`: genai-perf against ``ensemble`` vs
the in-process engine) and the CPU engines side by side (:mod:`.engines`, each in a :mod:`.worker` process,
llama.cpp's ``llama-server`` as the :mod:`.peer`). Imports nothing, so that a worker in another venv loads
only what it runs.
"""
