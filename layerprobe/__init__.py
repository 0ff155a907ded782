"""layerprobe: what does layer l of a language model know, and when does the answer form?

Data flows one way: task items -> engine -> per-layer scores or features -> results CSV -> figures.
"""

__version__ = "0.1.0"
