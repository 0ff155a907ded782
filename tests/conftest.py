import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # tests/tiny.py
sys.path.insert(0, str(Path(__file__).parent.parent))  # the repo root: layerprobe and the scripts

# No test touches the network: the Hugging Face libraries fail at once instead of trying the hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
